"""A local Airflow for this project, in parts: the settings file (`settings`), the components as process groups
(`supervisor`, whose `LocalAirflow` is what `make airflow`, the end-to-end tests and the benchmark start), the REST
client (`rest_client`) and database helpers (`databases`). `python -m dev.local_stack start|stop|status`."""
