"""How each kind of outbox event is delivered. Handlers render the state at delivery time,
so a late delivery shows what is true then; the table of kinds is ``registry``."""
