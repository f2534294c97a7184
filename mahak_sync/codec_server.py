"""The codec server (`mahak-sync codec-server`): encodes and decodes payloads for the Temporal
Web UI and the `temporal` CLI, so an authorised operator reads encrypted histories in clear.

    POST /decode   {"payloads": [{"metadata": {"encoding": "<base64>", ...}, "data": "<base64>"}]}
    POST /encode   the same shape

Payloads in the protobuf JSON shape (`temporal.api.common.v1.Payloads`) both ways, as the UI and
the CLI send and expect them; a payload this codec did not encrypt comes back unchanged.

Every request carries `Authorization: Bearer <CODEC_SERVER_TOKEN>` (the bare token is accepted
too), else 401; the CLI sends it with `--codec-auth "Bearer <token>"`. Browsers call from the
Web UI's origin: the origins in `CODEC_SERVER_CORS_ORIGINS` get CORS answers (preflight
included, which carries no credentials). Answers: 200 the payloads; 400 a malformed body, or a
payload that cannot be decrypted (unknown key id, altered); 401 no or wrong token.
"""

from __future__ import annotations

import hmac

import uvicorn
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from mahak_sync.codec import EncryptionCodec, PayloadDecryptionError, register_key_secrets
from mahak_sync.config import Settings
from mahak_sync.logging import get_logger, register_secret

log = get_logger(__name__)

# What the Web UI and the CLI send: the token, the JSON body, the namespace the payloads are of.
ALLOWED_HEADERS = ["authorization", "content-type", "x-namespace"]
_BEARER = "bearer "


def authorized(token: str, header: str | None) -> bool:
    """Whether an `Authorization` header carries `token` (`Bearer <token>` or bare)."""
    if not token or not header:
        return False
    given = header.strip()
    if given[: len(_BEARER)].lower() == _BEARER:
        given = given[len(_BEARER) :].strip()
    return hmac.compare_digest(given.encode(), token.encode())


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(settings: Settings, codec: EncryptionCodec | None = None) -> Starlette:
    """The ASGI app, with the codec the settings describe unless one is given (tests)."""
    register_key_secrets(settings)
    codec = codec or EncryptionCodec.from_settings(settings)
    if codec is None:
        raise SystemExit(
            "PAYLOAD_ENCRYPTION_KEYS is not set: the codec server needs the workers' keys"
        )
    token = settings.codec_server_token.get_secret_value()
    if not token:
        raise SystemExit(
            "CODEC_SERVER_TOKEN is not set: every request would be refused; set a long random "
            "token and give it to the operators"
        )
    register_secret(token)

    async def apply(request: Request, decode: bool) -> JSONResponse:
        if not authorized(token, request.headers.get("authorization")):
            log.warning(
                "codec request refused",
                path=request.url.path,
                client=request.client.host if request.client else None,
            )
            return _error(401, "unauthorized")
        try:
            payloads = json_format.Parse(
                await request.body(), Payloads(), ignore_unknown_fields=True
            ).payloads
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            return _error(400, f'malformed body: expected {{"payloads": [...]}} ({exc})')
        try:
            result = await (codec.decode(payloads) if decode else codec.encode(payloads))
        except PayloadDecryptionError as exc:
            log.warning("codec decode failed", error=str(exc))
            return _error(400, str(exc))
        return JSONResponse({"payloads": [json_format.MessageToDict(p) for p in result]})

    async def decode(request: Request) -> JSONResponse:
        return await apply(request, decode=True)

    async def encode(request: Request) -> JSONResponse:
        return await apply(request, decode=False)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/decode", decode, methods=["POST"]),
            Route("/encode", encode, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=settings.codec_server_cors_origin_list,
                allow_methods=["POST"],
                allow_headers=ALLOWED_HEADERS,
                # The UI's "Include cross-origin credentials" / "Pass access token".
                allow_credentials=True,
                max_age=600,
            )
        ],
    )


async def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8081) -> None:
    """Run the codec server until interrupted."""
    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    log.info(
        "codec server listening",
        host=host,
        port=port,
        cors_origins=settings.codec_server_cors_origin_list,
        current_key_id=settings.payload_encryption_key_id,
    )
    await uvicorn.Server(config).serve()
