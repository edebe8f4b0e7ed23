"""`fulfilment-load`: realistic traffic through the suite's public HTTP APIs, and a live view of it.

Staff register products and receive stock, customers place orders and cancel some, and every
order is read back through the query service with the command's `position` as
`X-Consistency-Token`, then followed until its saga settles it.
"""

from fulfilment_load.cli import main

__all__ = ["main"]
