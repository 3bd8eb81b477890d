"""The journey engine: a pure step function (``step``) over per-person state; effects are carried out elsewhere."""
