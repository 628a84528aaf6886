"""Outputs: layers and writers (``writers.write_run``), QGIS styles, the run's maps
(``maps.draw_maps``), charts, report, fonts."""
