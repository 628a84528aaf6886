"""Outputs: layers and writers, QGIS styles, maps and charts, report, fonts."""
