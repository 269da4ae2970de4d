"""Plain-Python logic for AWS Partner Central relationships: no Airflow imports, unit-tested on its own."""
