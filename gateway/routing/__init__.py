"""Routing and resilience: which upstream a call tries, in what order, and what Beluga knows of each
upstream's health (shared breakers, retry budget, concurrency slots). See docs/routing.md."""
