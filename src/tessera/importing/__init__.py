"""File import (文件导入): customers, orders, order items, products, reviews and events from CSV,
JSON lines or Parquet into the analytic store.

The pieces, in the order an import runs them:

* :mod:`.kinds` — what each kind of file holds: target fields, types, keys, required fields, aliases.
* :mod:`.mapping` — which file column feeds which field (flags, a mapping file, names, aliases).
* :mod:`.reading` — format and encoding; the file becomes a relation ``_imp_raw`` in DuckDB.
* :mod:`.parsing` — SQLGlot expressions that type every field and the checks that reject a row.
* :mod:`.rejects` — the rejected rows: reasons, line numbers as the user sees them, the CSV file.
* :mod:`.storing` — upserts by key, events de-duplicated by ``(source_id, message_id)``, profiles.

:func:`tessera.services.imports.import_file` runs them in one DuckDB transaction.
"""
