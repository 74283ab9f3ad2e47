"""The station console: a web app on the station desk over the station's own replica (``caresync console``).

Server-rendered pages (Starlette, Jinja2) in Chinese and English, plain forms and one small script, no build
step and nothing from a CDN. See docs/console.md.
"""

from caresync.console.app import ConsoleSettings, create_app, served_in_thread

__all__ = ["ConsoleSettings", "create_app", "served_in_thread"]
