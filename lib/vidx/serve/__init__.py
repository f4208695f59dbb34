"""Query side: load a published index and its query encoder, answer text/image/vector/clip queries.

query.py   Searcher: one index version + the model that made its vectors (`vidx search`)
rows.py    columnar id map: row -> clip, filters as row masks, (video, clip) -> row
state.py   ServedIndex: one verified, warmed-up version, the unit the server swaps
reload.py  IndexHolder: polls CURRENT, loads in the background, swaps atomically
payloads.py, compat.py, metrics.py, app.py: the HTTP server (`vidx serve`)
"""
