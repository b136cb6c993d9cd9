"""Helpers shared by the benchmark scenarios: measuring, data, tools, reports."""
