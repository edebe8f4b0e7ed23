"""A payment provider sandbox: `python -m saga_service.sandbox` (or `payment-sandbox`).

It accepts authorisation requests and answers each one later by calling its
callback URL, like a real provider's webhook, signed with HMAC-SHA256 (see
`saga_service.signatures`). Its latency, decline rate and never-answers rate are
configurable, so the saga can be run against slow, unwilling and silent
providers.
"""
