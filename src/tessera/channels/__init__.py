"""Outbound channels (触达渠道): how Tessera reaches people and systems — webhooks now; email, SMS
and push later, behind the same shape (send with an idempotency key → a delivery result)."""
