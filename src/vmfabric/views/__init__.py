"""Typed read views shared by ``show`` and the API: the JSON contract."""
