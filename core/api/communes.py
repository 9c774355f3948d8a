"""/api/v1/communes: the communes a token may see, with their categories and teams."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from core.api.deps import RuntimeDep, require
from core.api.schemas import CategoryOut, CommuneOut, QuestionOut, TeamOut
from core.auth import Actor, Permission
from core.config import Commune

router = APIRouter(prefix="/api/v1/communes", tags=["communes"])


def commune_out(commune: Commune) -> CommuneOut:
    return CommuneOut(
        slug=commune.slug,
        name=commune.name,
        reference_prefix=commune.reference_prefix,
        hub=commune.hub,
        categories=[
            CategoryOut(
                code=c.code, name=c.name, group=c.group, description=c.description, priority=c.priority,
                questions=[
                    QuestionOut(
                        code=q.code, label=q.label, type=q.type, required=q.required,
                        choices=[{"key": ch.key, "name": ch.name} for ch in q.choices],
                    )
                    for q in c.questions
                ],
            )
            for c in commune.categories
        ],
        teams=[TeamOut(code=t.code, name=t.name, hub=t.hub) for t in commune.teams],
        plugins=sorted(commune.plugins),
    )


@router.get("", response_model=list[CommuneOut], summary="Communes this token may see")
def list_communes(
    runtime: RuntimeDep, actor: Annotated[Actor, Depends(require(Permission.READ))]
) -> list[CommuneOut]:
    return [commune_out(c) for c in runtime.area.communes.values() if actor.sees(c.slug)]
