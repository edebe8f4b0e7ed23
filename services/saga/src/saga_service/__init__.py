"""The order-fulfilment saga: reserves stock, takes payment, confirms the order or compensates.

`saga_service.saga` holds the pure decisions, `saga_service.orchestrator` drives
them against the command service and a payment provider, `saga_service.timers`
keeps the durable deadlines, and `saga_service.sandbox` is a payment provider to
run it against. See docs/saga.md.
"""
