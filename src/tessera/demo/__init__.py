"""The demo brand 远山户外 Yuanshan Outdoor (see docs/demo.md).

* :func:`tessera.demo.generate.generate` — the deterministic generator of a Chinese outdoor-apparel
  brand's members and their scattered identifiers, products, orders, reviews and behaviour events;
* :func:`tessera.demo.live.live_messages` — recent Segment traffic from the brand's app;
* :mod:`tessera.demo.load` — loading both through the product's import and collection paths.
"""
