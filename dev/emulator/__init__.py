"""A local emulator of the Partner Central Channel API (AWS JSON 1.0 over HTTP), for the demo, tests and trials."""
