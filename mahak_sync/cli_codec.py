"""`mahak-sync codec-server`: decodes encrypted payloads for the Temporal Web UI and CLI.

    mahak-sync codec-server [--host 127.0.0.1] [--port 8081]

Needs the workers' `PAYLOAD_ENCRYPTION_KEYS` / `PAYLOAD_ENCRYPTION_KEY_ID`, a
`CODEC_SERVER_TOKEN` its callers send as `Authorization: Bearer <token>`, and
`CODEC_SERVER_CORS_ORIGINS` (default the dev Web UI, `http://localhost:8233`). See
`mahak_sync.codec_server` and the README's "Encrypted payloads".
"""

from __future__ import annotations

import argparse

from .config import get_settings

DEFAULT_PORT = 8081


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "codec-server",
        help="serve /encode and /decode for the Temporal Web UI and CLI (encrypted payloads)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.set_defaults(func=_codec_server)


async def _codec_server(args: argparse.Namespace) -> int:
    from .codec_server import serve

    await serve(get_settings(), host=args.host, port=args.port)
    return 0
