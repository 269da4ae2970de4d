"""AWS Partner Central relationships: the service model, request and token, retries, rate limit and the create path
in plain Python (unit-tested without Airflow), and their Airflow face: `hooks` (PartnerCentralChannelHook) and
`operators` (CreateRelationshipOperator), in the style of the Amazon provider."""
