"""Development tools, not deployed: the Partner Central emulator, sample data, the local Airflow stack."""
