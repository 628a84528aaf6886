"""Spatial measures: geodesy, PM2.5 zonal means, road density, high-speed rail."""
