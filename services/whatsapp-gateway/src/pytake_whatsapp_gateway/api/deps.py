from typing import Annotated

from fastapi import Depends, Request

from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_common.web import request_db
from pytake_whatsapp_gateway.sending.graph import GraphClient
from pytake_whatsapp_gateway.webhooks.intake import WebhookIntake

DB = Annotated[Database, Depends(request_db)]


async def secret_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


async def graph_client(request: Request) -> GraphClient:
    graph: GraphClient = request.app.state.graph
    return graph


async def webhook_intake(request: Request) -> WebhookIntake:
    intake: WebhookIntake = request.app.state.webhook_intake
    return intake


Box = Annotated[SecretBox, Depends(secret_box)]
Graph = Annotated[GraphClient, Depends(graph_client)]
Intake = Annotated[WebhookIntake, Depends(webhook_intake)]
