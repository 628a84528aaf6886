"""Analysis stages: integration index, autocorrelation, core-periphery, metro areas, regional
disparity (``regional``)."""
