"""Demo specialists with schedules: deterministic, varied, fast to load.

``load_demo_data(db, 1000)`` creates a thousand specialists in cities on every continent (each
with its real IANA time zone), speaking the languages of their place, with skills from a
catalogue of professions (law, tax, medicine, design, engineering, coaching, ...), education,
hourly rates, ratings and reviews, and one or two public schedules: weekly hours in local time,
30 to 90 minute slots, buffers, notice, a few blackout dates, prices in USD or USDC, mostly
one-to-one sessions and some group ones. A few schedules are private or deleted, as in real
data. The same seed on the same database gives the same rows. Rows are written with bulk
inserts, so 100,000 specialists load in about a minute.

The package: ``places`` and ``professions`` hold the data tables, ``people`` draws one
specialist with schedules from them, ``loader`` writes them in bulk.
"""

from agent_server.booking.demo.loader import load_demo_data

__all__ = ["load_demo_data"]
