"""The warehouse-to-Partner-Central sync: plain Python on DB-API connections, driven by the sync DAG."""
