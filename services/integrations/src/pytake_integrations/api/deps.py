"""Dependencies shared by integrations' routers."""

from typing import Annotated

from fastapi import Depends, Request

from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_common.web import request_db
from pytake_integrations.endpoints import SealedAnswers, UrlPolicy

DB = Annotated[Database, Depends(request_db)]


def _box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


def _answers(request: Request) -> SealedAnswers:
    answers: SealedAnswers = request.app.state.sealed_answers
    return answers


def _policy(request: Request) -> UrlPolicy:
    policy: UrlPolicy = request.app.state.url_policy
    return policy


Box = Annotated[SecretBox, Depends(_box)]
Answers = Annotated[SealedAnswers, Depends(_answers)]
Policy = Annotated[UrlPolicy, Depends(_policy)]
