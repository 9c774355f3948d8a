"""Demo data: a few hundred realistic tickets across the configured communes.

Deterministic (seeded) so that screenshots and tutorials match. Tickets go
through the same intake and workflow code as real ones, then their times are
spread over the last weeks.
"""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import func, select

from core import ticket_actions
from core.db.models import Ticket, TicketEvent
from core.db.types import utcnow
from core.intake import accept_signal
from core.runtime import Runtime
from core.signals import Location, Report, Reporter
from core.workflow import Status

STREETS = (
    "rue Blatin",
    "avenue des États-Unis",
    "boulevard Léon Malfreyt",
    "rue du Port",
    "place de Jaude",
    "rue Ballainvilliers",
    "avenue Julien",
    "rue Fontgiève",
    "boulevard Lafayette",
    "rue Montlosier",
    "avenue de Royat",
    "rue de l'Oradou",
    "avenue du Mont-Dore",
    "rue Gambetta",
    "place Delille",
    "rue des Gras",
    "avenue Édouard Michelin",
    "rue Pasteur",
    "chemin des Vignes",
    "rue de la Treille",
)

DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "proprete": (
        "Dépôt de sacs poubelle sur le trottoir",
        "Tags sur le mur de l'école",
        "Verre cassé devant l'arrêt de bus",
        "Corbeille de rue pleine depuis trois jours",
    ),
    "encombrants": (
        "Canapé abandonné devant l'immeuble",
        "Matelas et sommier déposés au pied du container",
        "Réfrigérateur laissé sur le trottoir",
    ),
    "espaces-verts": (
        "Branche tombée sur l'allée du parc",
        "Haie qui déborde sur le trottoir",
        "Arrosage automatique qui fuit",
        "Arbre penché après le coup de vent",
    ),
    "voirie": (
        "Nid-de-poule profond sur la chaussée",
        "Pavés descellés sur le trottoir",
        "Affaissement de la chaussée près du regard",
        "Bordure de trottoir cassée",
    ),
    "travaux": (
        "Barrières de chantier renversées",
        "Tranchée mal rebouchée après travaux",
        "Chantier bruyant la nuit",
    ),
    "eau-assainissement": (
        "Bouche d'égout bouchée, l'eau stagne",
        "Fuite d'eau sur la chaussée",
        "Odeur d'égout persistante",
        "Grille d'avaloir manquante",
    ),
    "eclairage": (
        "Lampadaire éteint devant le n°12",
        "Trois lampadaires éteints dans la rue",
        "Éclairage allumé en plein jour",
        "Candélabre penché après un choc",
    ),
    "signalisation": (
        "Panneau stop arraché",
        "Feu tricolore en panne au carrefour",
        "Marquage du passage piéton effacé",
    ),
    "incivilites": (
        "Dépôt sauvage de gravats",
        "Affichage sauvage sur le mobilier urbain",
        "Déjections canines devant l'école",
    ),
    "stationnement": (
        "Voiture garée sur le trottoir devant la crèche",
        "Véhicule ventouse depuis trois semaines",
        "Stationnement sur la place handicapée",
    ),
    "autre": ("Banc public cassé", "Fontaine à eau hors service", "Nid de frelons dans l'abri-bus"),
}

FIRST_NAMES = (
    "Claire",
    "Mathieu",
    "Sophie",
    "Karim",
    "Élodie",
    "Jean",
    "Nadia",
    "Pierre",
    "Lucie",
    "Hugo",
)
LAST_NAMES = (
    "Martin",
    "Bernard",
    "Dubois",
    "Moreau",
    "Laurent",
    "Roux",
    "Fournier",
    "Girard",
    "Bonnet",
    "Mercier",
)
CHANNELS = (("phone", 45), ("web", 22), ("app", 15), ("counter", 6), ("sms", 6), ("email", 6))


def _answers_for(category, rng: random.Random) -> dict:
    answers = {}
    for question in category.questions:
        if not question.required and rng.random() < 0.5:
            continue
        if question.type == "integer":
            answers[question.code] = rng.randint(1, 4)
        elif question.type == "number":
            answers[question.code] = round(rng.uniform(1, 20), 1)
        elif question.type == "boolean":
            answers[question.code] = rng.random() < 0.5
        elif question.type == "choice":
            answers[question.code] = rng.choice(question.choices).key
        elif question.type == "multichoice":
            answers[question.code] = [rng.choice(question.choices).key]
        elif question.type == "date":
            answers[question.code] = (
                utcnow().date() - timedelta(days=rng.randint(0, 5))
            ).isoformat()
        else:
            answers[question.code] = "Voir description"
    return answers


def load_demo_tickets(runtime: Runtime, count: int, seed: int = 2026) -> int:
    """Create ``count`` demo tickets unless the database already has tickets; return how many."""
    with runtime.sessions() as session:
        if session.scalar(select(func.count(Ticket.id))):
            return 0
    rng = random.Random(seed)
    communes = list(runtime.area.communes.values())
    channels, weights = zip(*CHANNELS, strict=True)
    created = 0
    with runtime.sessions() as session:
        for index in range(count):
            commune = (
                communes[0] if index % 2 == 0 else rng.choice(communes)
            )  # the city gets most calls
            usable = [c for c in commune.categories if c.public]
            if not usable:
                continue
            category = rng.choice(usable)
            group = category.code if category.code in DESCRIPTIONS else category.code.split("-")[0]
            description = rng.choice(DESCRIPTIONS.get(group, DESCRIPTIONS["autre"]))
            lat, lon = commune.center or (45.7772, 3.0870)
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            wants = rng.choice(("email", "sms", None))
            report = Report(
                commune=commune.slug,
                category=category.code,
                description=description,
                channel=rng.choices(channels, weights)[0],
                location=Location(
                    round(lat + rng.uniform(-0.012, 0.012), 6),
                    round(lon + rng.uniform(-0.015, 0.015), 6),
                    f"{rng.randint(1, 120)} {rng.choice(STREETS)}, {commune.name}",
                ),
                reporter=Reporter(
                    name=f"{first} {last}",
                    email=f"{first.lower()}.{last.lower()}@example.org".replace("é", "e").replace(
                        "É", "e"
                    ),
                    phone=f"06{rng.randint(10000000, 99999999)}",
                    notify_by=wants,
                ),
                answers=_answers_for(category, rng),
            )
            ticket = accept_signal(runtime, session, report, "agent:demo").ticket
            _walk_workflow(runtime, session, ticket, commune, rng)
            _backdate(session, ticket, timedelta(days=rng.uniform(0, 45)))
            created += 1
            if created % 50 == 0:
                session.commit()
        session.commit()
    return created


def _walk_workflow(runtime: Runtime, session, ticket: Ticket, commune, rng: random.Random) -> None:
    if ticket.status != Status.NEW.value:
        return
    steps = rng.choices((0, 1, 2, 3, 4, 5), (25, 15, 20, 15, 15, 10))[0]
    if steps >= 1:
        ticket_actions.change_status(runtime, session, ticket, "acknowledged", "agent:demo")
    if steps >= 2 and commune.teams:
        team = ticket.team or rng.choice(commune.teams).code
        ticket_actions.assign(runtime, session, ticket, team, "supervisor:demo")
    if steps >= 3:
        ticket_actions.change_status(runtime, session, ticket, "in_progress", "field:demo")
    if steps >= 4:
        ticket_actions.change_status(
            runtime, session, ticket, "resolved", "field:demo", comment="Intervention réalisée."
        )
    if steps >= 5:
        ticket_actions.change_status(runtime, session, ticket, "closed", "supervisor:demo")


def _backdate(session, ticket: Ticket, age: timedelta) -> None:
    session.flush()
    ticket.created_at -= age
    ticket.updated_at -= age * 0.5
    if ticket.due_at:
        ticket.due_at -= age
    for record in ticket.signals:
        record.received_at -= age
    events = session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id))
    for position, event in enumerate(events):
        event.at = ticket.created_at + (age * 0.5) * (position / 6)
