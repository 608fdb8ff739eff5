"""Bulk import of people from uploaded CSV and XLSX files."""
