"""Sentences that both the API's permission class and the scoped selectors say (a module of its own, which imports
nothing, so that DRF can load teams.permissions while backend.exceptions is loading)."""

NO_TEAM = "You are not a member of any team; ask a team owner to add you."
