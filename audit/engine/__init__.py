"""The pure audit engine: records, config values and `now` in; actions, findings, pricing,
budgets, forecasts, spikes and analysis out. Imports neither the store, the connector nor
the CLI."""
