"""Readers of cubes, labels and references; writers of class maps; class tables and palettes."""
