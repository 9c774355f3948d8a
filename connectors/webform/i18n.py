"""The web form's words, in French (the default) and English.

A plain dictionary per language: the pages are few and translators edit one
file. Commune content (category names, questions) comes from the commune's
configuration: as written there, or from the category's ``translations`` for
the page's language (see ``core.config.models.Category.in_language``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

DEFAULT_LANGUAGE = "fr"
LANGUAGE_NAMES: dict[str, str] = {"fr": "Français", "en": "English"}

MESSAGES: dict[str, dict[str, str]] = {
    "fr": {
        "site.name": "Allô Mairie",
        "nav.skip": "Aller au contenu",
        "nav.language": "Langue",
        "nav.track": "Suivre un signalement",
        "nav.report": "Signaler un problème",
        "step": "Étape {current} sur {total}",
        "required": "obligatoire",
        "optional": "facultatif",
        "continue": "Continuer",
        "change": "changer",
        "change.commune": "changer de commune",
        "change.category": "changer de catégorie",
        "choose": "— Choisir —",
        "yes": "Oui",
        "no": "Non",
        "errors.title": "Le formulaire contient {count} erreur(s) :",
        "error.prefix": "Erreur :",
        "start.title": "Signaler un problème dans l'espace public",
        "start.intro": (
            "Nid-de-poule, lampadaire éteint, dépôt sauvage, fuite d'eau… "
            "Votre signalement est transmis à l'équipe qui s'en occupe."
        ),
        "start.commune": "Commune",
        "start.commune_legend": "Dans quelle commune ?",
        "start.commune_unknown": "Je ne sais pas : la trouver d'après la position",
        "start.commune_help": (
            "Si vous ne connaissez pas la commune, laissez ce choix "
            "et donnez la position ci-dessous."
        ),
        "start.position": "Ou la position du problème",
        "start.position_help": (
            "Latitude et longitude en degrés décimaux, par exemple 45.7772 et 3.0870."
        ),
        "start.none": "Aucune commune ne reçoit de signalements par ce formulaire pour le moment.",
        "category.title": "Quel est le problème ?",
        "category.commune": "Commune : {name}",
        "category.legend": "Catégorie",
        "form.commune_category": "{category} — {commune}",
        "form.questions": "Quelques précisions",
        "form.problem": "Ce que vous avez constaté",
        "form.description": "Description du problème",
        "form.description_help": "Ce que vous avez vu, et depuis quand si vous le savez.",
        "form.where": "Où se trouve le problème ?",
        "form.where_help": (
            "Donnez une adresse, ou les coordonnées, ou joignez une photo prise sur place "
            "avec la localisation activée : sa position sera utilisée."
        ),
        "form.address": "Adresse ou lieu",
        "form.latitude": "Latitude",
        "form.longitude": "Longitude",
        "form.photo": "Photo",
        "form.photo_legend": "Photo",
        "form.photo_help": (
            "JPEG, PNG ou WebP, 10 Mo au plus. Les métadonnées de la photo "
            "(appareil, date, position) sont supprimées avant l'enregistrement."
        ),
        "form.contact": "Vos coordonnées",
        "form.contact_help": (
            "Elles ne servent qu'à vous tenir informé et ne sont jamais publiées."
        ),
        "form.name": "Nom",
        "form.email": "Adresse e-mail",
        "form.phone": "Téléphone mobile",
        "form.notify": "Comment voulez-vous être prévenu ?",
        "form.notify_email": "Par e-mail",
        "form.notify_sms": "Par SMS",
        "form.notify_none": "Je ne souhaite pas être prévenu",
        "form.submit": "Envoyer le signalement",
        "form.multichoice_help": "Cochez toutes les réponses qui conviennent.",
        "error.required": "Ce champ est obligatoire.",
        "error.choose": "Choisissez une réponse.",
        "error.choice": "Choisissez une des réponses proposées.",
        "error.integer": "Saisissez un nombre entier, par exemple 3.",
        "error.number": "Saisissez un nombre, par exemple 2,5.",
        "error.date": "Saisissez une date valide (jour, mois, année).",
        "error.text": "Saisissez un texte.",
        "error.boolean": "Répondez par oui ou par non.",
        "error.description_short": "Décrivez le problème en quelques mots (3 caractères au moins).",
        "error.too_long": "Ce texte est trop long ({max} caractères au plus).",
        "error.coordinate": "Saisissez un nombre en degrés décimaux, par exemple {example}.",
        "error.latitude_range": "La latitude doit être comprise entre -90 et 90.",
        "error.longitude_range": "La longitude doit être comprise entre -180 et 180.",
        "error.both_coordinates": "Donnez la latitude et la longitude, ou aucune des deux.",
        "error.outside_commune": "Ce point n'est pas sur le territoire de {commune}.",
        "error.no_location": (
            "Indiquez où se trouve le problème : une adresse, des coordonnées, "
            "ou une photo localisée."
        ),
        "error.no_commune_here": (
            "Aucune commune desservie ne contient ce point. Choisissez la commune dans la liste."
        ),
        "error.commune_or_position": "Choisissez une commune ou donnez la position du problème.",
        "error.unknown_commune": "Cette commune ne reçoit pas de signalements par ce formulaire.",
        "error.unknown_category": "Choisissez une catégorie dans la liste.",
        "error.email": "Saisissez une adresse e-mail valide, par exemple nom@exemple.fr.",
        "error.phone": "Saisissez un numéro de téléphone valide, par exemple 06 12 34 56 78.",
        "error.notify": "Choisissez comment être prévenu.",
        "error.notify_email": "Donnez votre adresse e-mail pour être prévenu par e-mail.",
        "error.notify_sms": "Donnez votre numéro de mobile pour être prévenu par SMS.",
        "error.photo_type": "La photo doit être une image JPEG, PNG ou WebP.",
        "error.photo_too_big": "La photo dépasse 10 Mo. Choisissez une image plus légère.",
        "error.photo_unreadable": (
            "Cette image est illisible ou trop grande. Essayez une autre photo."
        ),
        "error.token_expired": (
            "Le formulaire a expiré. Vérifiez vos réponses, ajoutez de nouveau la photo "
            "s'il y en avait une, et envoyez-le encore."
        ),
        "receipt.title": "Merci, votre signalement est enregistré",
        "receipt.reference": "Votre référence",
        "receipt.keep": (
            "Notez cette référence : elle permet de suivre le traitement de votre signalement."
        ),
        "receipt.track": "Suivre ce signalement",
        "receipt.another": "Signaler un autre problème",
        "receipt.followed_title": "Merci, votre signalement est ajouté au signalement existant",
        "receipt.followed": (
            "Ce problème avait déjà été signalé : votre signalement y a été rattaché. "
            "Suivez son traitement avec cette référence."
        ),
        "follow.title": "Ce problème a peut-être déjà été signalé",
        "follow.intro": (
            "Des signalements en cours de traitement concernent le même type de problème "
            "tout près. S'il s'agit du même, suivez-le : votre signalement y sera ajouté "
            "et vous serez prévenu comme les autres."
        ),
        "follow.where": "Où",
        "follow.distance": "À environ {metres} m",
        "follow.same_asset": "Sur le même équipement",
        "follow.nearby": "Tout près",
        "follow.this": "Déjà signalé : suivre ce signalement",
        "follow.new_title": "Ce n'est pas le même problème ?",
        "follow.new_help": "Votre signalement sera enregistré séparément.",
        "follow.new": "Envoyer un nouveau signalement",
        "follow.gone": (
            "Le signalement choisi vient d'être clos. Choisissez-en un autre "
            "ou envoyez un nouveau signalement."
        ),
        "track.lookup_title": "Suivre un signalement",
        "track.lookup_label": "Référence du signalement",
        "track.lookup_help": "Elle figure sur l'accusé de réception, par exemple CLF-2026-000123.",
        "track.lookup_submit": "Afficher le suivi",
        "track.title": "Suivi du signalement {reference}",
        "track.commune": "Commune",
        "track.category": "Catégorie",
        "track.status": "Statut",
        "track.received": "Reçu le",
        "track.updated": "Dernière mise à jour",
        "track.due": "Intervention prévue avant le",
        "track.duplicate_of": (
            "Ce problème avait déjà été signalé : suivez le signalement {reference}."
        ),
        "track.history": "Historique",
        "track.no_history": "Pas encore d'étape à afficher.",
        "event.created": "Signalement reçu",
        "event.status_changed": "Statut : {status}",
        "event.assigned": "Confié à l'équipe : {team}",
        "event.assigned_none": "Retiré de l'équipe qui le traitait",
        "event.redirected": "Transmis à {outside_body}",
        "event.due_date_set": "Intervention prévue avant le {date}",
        "event.due_date_cleared": "Date d'intervention retirée",
        "event.priority_changed": "Priorité mise à jour",
        "event.commented": "Message de la mairie",
        "event.duplicate_of": "Rattaché au signalement {reference}, qui concerne le même problème",
        "event.duplicates": "Un autre signalement du même problème y a été rattaché",
        "event.report_attached": "Un autre signalement du même problème a été reçu",
        "event.other": "Mise à jour",
        "status.new": "Reçu",
        "status.acknowledged": "Pris en compte",
        "status.assigned": "Confié à une équipe",
        "status.in_progress": "En cours de traitement",
        "status.resolved": "Résolu",
        "status.closed": "Clos",
        "status.rejected": "Non retenu",
        "status.duplicate": "Déjà signalé",
        "status.redirected": "Transmis à un autre organisme",
        "status.reopened": "Rouvert",
        "page.not_found_title": "Page introuvable",
        "page.not_found": "Aucun signalement ne porte la référence « {reference} ».",
        "page.not_found_generic": "Cette page n'existe pas.",
        "page.too_large_title": "Envoi trop volumineux",
        "page.too_large": (
            "L'envoi dépasse {limit} Mo. La photo doit faire 10 Mo au plus : "
            "revenez au formulaire et choisissez une image plus légère."
        ),
        "page.forbidden_title": "Envoi refusé",
        "page.forbidden": (
            "Ce formulaire n'a pas été envoyé depuis ce site. Ouvrez le formulaire "
            "de signalement et envoyez-le de nouveau."
        ),
        "page.bad_request_title": "Envoi illisible",
        "page.bad_request": "Le formulaire reçu est incomplet ou illisible. Réessayez.",
        "page.too_many_title": "Trop de demandes",
        "page.too_many": (
            "Trop de demandes sont venues de votre adresse en peu de temps. "
            "Réessayez dans {seconds} secondes."
        ),
        "page.too_many_sent_title": "Trop d'envois",
        "page.too_many_sent": (
            "Trop de formulaires sont venus de votre adresse en peu de temps : celui-ci "
            "n'a pas été enregistré. Revenez en arrière et envoyez-le de nouveau "
            "dans {seconds} secondes."
        ),
        "page.back": "Revenir au formulaire",
        "datetime": "{day:02d}/{month:02d}/{year} à {hour:02d}h{minute:02d}",
    },
    "en": {
        "site.name": "Allô Mairie",
        "nav.skip": "Skip to content",
        "nav.language": "Language",
        "nav.track": "Track a report",
        "nav.report": "Report a problem",
        "step": "Step {current} of {total}",
        "required": "required",
        "optional": "optional",
        "continue": "Continue",
        "change": "change",
        "change.commune": "change town",
        "change.category": "change category",
        "choose": "— Choose —",
        "yes": "Yes",
        "no": "No",
        "errors.title": "The form has {count} error(s):",
        "error.prefix": "Error:",
        "start.title": "Report a problem in a public space",
        "start.intro": (
            "Pothole, street light out, fly-tipping, water leak… "
            "Your report goes to the team that deals with it."
        ),
        "start.commune": "Town",
        "start.commune_legend": "In which town?",
        "start.commune_unknown": "I don't know: find it from the position",
        "start.commune_help": (
            "If you don't know the town, leave this choice and give the position below."
        ),
        "start.position": "Or the position of the problem",
        "start.position_help": (
            "Latitude and longitude in decimal degrees, e.g. 45.7772 and 3.0870."
        ),
        "start.none": "No town takes reports through this form at the moment.",
        "category.title": "What is the problem?",
        "category.commune": "Town: {name}",
        "category.legend": "Category",
        "form.commune_category": "{category} — {commune}",
        "form.questions": "A few details",
        "form.problem": "What you saw",
        "form.description": "Description of the problem",
        "form.description_help": "What you saw, and since when if you know.",
        "form.where": "Where is the problem?",
        "form.where_help": (
            "Give an address, or the coordinates, or attach a photo taken on the spot "
            "with location turned on: its position will be used."
        ),
        "form.address": "Address or place",
        "form.latitude": "Latitude",
        "form.longitude": "Longitude",
        "form.photo": "Photo",
        "form.photo_legend": "Photo",
        "form.photo_help": (
            "JPEG, PNG or WebP, 10 MB at most. The photo's metadata "
            "(camera, date, position) is removed before it is stored."
        ),
        "form.contact": "Your contact details",
        "form.contact_help": "Used only to keep you informed; never published.",
        "form.name": "Name",
        "form.email": "Email address",
        "form.phone": "Mobile phone",
        "form.notify": "How would you like to hear back?",
        "form.notify_email": "By email",
        "form.notify_sms": "By text message (SMS)",
        "form.notify_none": "I don't want to hear back",
        "form.submit": "Send the report",
        "form.multichoice_help": "Tick every answer that applies.",
        "error.required": "This field is required.",
        "error.choose": "Choose an answer.",
        "error.choice": "Choose one of the answers offered.",
        "error.integer": "Enter a whole number, e.g. 3.",
        "error.number": "Enter a number, e.g. 2.5.",
        "error.date": "Enter a valid date (day, month, year).",
        "error.text": "Enter some text.",
        "error.boolean": "Answer yes or no.",
        "error.description_short": "Describe the problem in a few words (at least 3 characters).",
        "error.too_long": "This text is too long ({max} characters at most).",
        "error.coordinate": "Enter a number in decimal degrees, e.g. {example}.",
        "error.latitude_range": "Latitude must be between -90 and 90.",
        "error.longitude_range": "Longitude must be between -180 and 180.",
        "error.both_coordinates": "Give both latitude and longitude, or neither.",
        "error.outside_commune": "This point is not within {commune}.",
        "error.no_location": (
            "Say where the problem is: an address, coordinates, or a photo with its location."
        ),
        "error.no_commune_here": (
            "No town we serve contains this point. Choose the town from the list."
        ),
        "error.commune_or_position": "Choose a town or give the position of the problem.",
        "error.unknown_commune": "This town does not take reports through this form.",
        "error.unknown_category": "Choose a category from the list.",
        "error.email": "Enter a valid email address, e.g. name@example.org.",
        "error.phone": "Enter a valid phone number, e.g. +33 6 12 34 56 78.",
        "error.notify": "Choose how to hear back.",
        "error.notify_email": "Give your email address to hear back by email.",
        "error.notify_sms": "Give your mobile number to hear back by text message.",
        "error.photo_type": "The photo must be a JPEG, PNG or WebP image.",
        "error.photo_too_big": "The photo is larger than 10 MB. Choose a smaller image.",
        "error.photo_unreadable": "This image cannot be read or is too large. Try another photo.",
        "error.token_expired": (
            "The form has expired. Check your answers, attach the photo again if there "
            "was one, and send it again."
        ),
        "receipt.title": "Thank you, your report is recorded",
        "receipt.reference": "Your reference",
        "receipt.keep": "Keep this reference: it lets you follow what happens to your report.",
        "receipt.track": "Track this report",
        "receipt.another": "Report another problem",
        "receipt.followed_title": "Thank you, your report was added to the existing one",
        "receipt.followed": (
            "This problem had already been reported: your report was added to it. "
            "Follow its progress with this reference."
        ),
        "follow.title": "This problem may already have been reported",
        "follow.intro": (
            "Reports being dealt with are about the same kind of problem close by. "
            "If it is the same one, follow it: your report is added to it and you "
            "will hear back like the others."
        ),
        "follow.where": "Where",
        "follow.distance": "About {metres} m away",
        "follow.same_asset": "On the same equipment",
        "follow.nearby": "Close by",
        "follow.this": "Already reported: follow it",
        "follow.new_title": "Not the same problem?",
        "follow.new_help": "Your report will be recorded on its own.",
        "follow.new": "Send a new report",
        "follow.gone": (
            "The report you chose has just been closed. Choose another one or send a new report."
        ),
        "track.lookup_title": "Track a report",
        "track.lookup_label": "Report reference",
        "track.lookup_help": "It is on your receipt, e.g. CLF-2026-000123.",
        "track.lookup_submit": "Show progress",
        "track.title": "Progress of report {reference}",
        "track.commune": "Town",
        "track.category": "Category",
        "track.status": "Status",
        "track.received": "Received",
        "track.updated": "Last update",
        "track.due": "Work planned before",
        "track.duplicate_of": "This problem had already been reported: follow report {reference}.",
        "track.history": "History",
        "track.no_history": "Nothing to show yet.",
        "event.created": "Report received",
        "event.status_changed": "Status: {status}",
        "event.assigned": "Given to the team: {team}",
        "event.assigned_none": "Taken off the team that had it",
        "event.redirected": "Passed to {outside_body}",
        "event.due_date_set": "Work planned before {date}",
        "event.due_date_cleared": "Planned date removed",
        "event.priority_changed": "Priority updated",
        "event.commented": "Message from the town hall",
        "event.duplicate_of": "Joined to report {reference}, about the same problem",
        "event.duplicates": "Another report of the same problem was joined to it",
        "event.report_attached": "Another report of the same problem was received",
        "event.other": "Update",
        "status.new": "Received",
        "status.acknowledged": "Acknowledged",
        "status.assigned": "Given to a team",
        "status.in_progress": "In progress",
        "status.resolved": "Resolved",
        "status.closed": "Closed",
        "status.rejected": "Not taken forward",
        "status.duplicate": "Already reported",
        "status.redirected": "Passed to another organisation",
        "status.reopened": "Reopened",
        "page.not_found_title": "Page not found",
        "page.not_found": "No report has the reference “{reference}”.",
        "page.not_found_generic": "This page does not exist.",
        "page.too_large_title": "Upload too large",
        "page.too_large": (
            "The upload is larger than {limit} MB. The photo must be 10 MB at most: "
            "go back to the form and choose a smaller image."
        ),
        "page.forbidden_title": "Form refused",
        "page.forbidden": (
            "This form was not sent from this site. Open the report form and send it again."
        ),
        "page.bad_request_title": "Unreadable form",
        "page.bad_request": "The form received is incomplete or unreadable. Please try again.",
        "page.too_many_title": "Too many requests",
        "page.too_many": (
            "Too many requests came from your address in a short time. "
            "Try again in {seconds} seconds."
        ),
        "page.too_many_sent_title": "Too many forms sent",
        "page.too_many_sent": (
            "Too many forms came from your address in a short time: this one was not "
            "recorded. Go back and send it again in {seconds} seconds."
        ),
        "page.back": "Back to the form",
        "datetime": "{day} {month_name} {year}, {hour:02d}:{minute:02d}",
    },
}

_MONTHS_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

Translate = Callable[..., str]


def translator(language: str) -> Translate:
    """``_(key, **values)`` for ``language``: the message with ``values`` filled in."""
    catalogue = MESSAGES.get(language, MESSAGES[DEFAULT_LANGUAGE])

    def _(key: str, **values: object) -> str:
        text = catalogue.get(key) or MESSAGES[DEFAULT_LANGUAGE][key]
        return text.format(**values) if values else text

    return _


def format_datetime(language: str, moment: datetime) -> str:
    """A date and time as residents write it in ``language``."""
    return translator(language)(
        "datetime",
        day=moment.day,
        month=moment.month,
        month_name=_MONTHS_EN[moment.month - 1],
        year=moment.year,
        hour=moment.hour,
        minute=moment.minute,
    )


def pick_language(requested: str | None, accept_language: str | None) -> str:
    """``?lang=`` if we have it, else the best of the browser's Accept-Language, else French."""
    if requested in MESSAGES:
        return str(requested)
    candidates: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in MESSAGES:
            continue
        quality = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
        if quality > 0:
            # Equal weights: the one listed first wins.
            candidates.append((quality, -position, primary))
    return max(candidates)[2] if candidates else DEFAULT_LANGUAGE
