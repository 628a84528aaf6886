"""Reading inputs: yearbook panels, PM2.5 rasters, downloads."""
