"""The companion web dashboard for agent owners, specialists and operators, served at ``/``.

Server-rendered pages (Jinja2 templates, htmx for small in-page updates, no front-end build):

- ``signin``: a one-time code mailed to the person's email opens a server-side session
  (``agent_server.dashboard.sessions``), kept in an HttpOnly, SameSite=Lax cookie; every form
  carries a per-session CSRF token.
- owners (every agent whose ``owner_email`` or ``email`` is theirs): agents, keys, caps,
  callback URL, wallet with QR codes, usage chart and CSV, transactions, bookings, schedules;
- specialists (``specialists.email``): profile, schedules, bookings;
- operators (``AGENT_SERVER_OPERATOR_EMAILS``): suspend, ban and reactivate agents.

Pages call the same services as REST and MCP (accounts, booking, billing, wallets); they never
write to the store themselves. ``install_dashboard(app, runtime)`` in
``agent_server.dashboard.routes`` adds the pages and ``/static`` to the server's app.
"""
