"""Raw source rows → `Action`s, one module per source family: reconciliation for
AgentWorkItem + EventLogFile, usage event × step × session for Data 360."""
