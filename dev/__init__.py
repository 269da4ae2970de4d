"""Development tools, not deployed: the Partner Central emulator, sample data, the local Airflow stack."""

from pathlib import Path

# The checkout these tools work on (the package is installed editable, so this is the working tree).
PROJECT_DIR = Path(__file__).resolve().parent.parent
