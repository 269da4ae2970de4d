"""Airflow hook and operator for AWS Partner Central Channel, in the style of the Amazon provider."""
