"""Open311 GeoReport v2 conformance: the spec's own examples, replayed unchanged.

The configuration is the spec's example city (``connectors.open311.testing``):
jurisdiction ``city.gov``, services 001, 002, 003, 006 and 033, api_key ``xyz``.
Each test sends a request exactly as wiki.open311.org/GeoReport_v2 writes it
(only the endpoint's base URL differs: a server chooses it and its discovery
document announces it) and checks the answer element by element against the
spec's example answer, parsed with xml.etree.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from connectors.open311.testing import add_api_key, as_text, spark, write_spec_city
from core.db.models import Ticket
from core.intake import accept_signal
from core.signals import Location, Report
from core.ticket_actions import find_ticket, mark_duplicate

SPEC_BASE = "https://api.city.gov/dev/v2"
OUR_BASE = "/open311/v2"
W3C = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")

# --- The spec's examples, as published -------------------------------------------

SPEC_SERVICES_URL = SPEC_BASE + "/services.xml?jurisdiction_id=city.gov"
SPEC_DEFINITION_URL = SPEC_BASE + "/services/033.xml?jurisdiction_id=city.gov"
SPEC_REQUESTS_URL = (
    SPEC_BASE + "/requests.xml?start_date=2010-05-24T00:00:00Z&end_date=2010-06-24T00:00:00Z"
    "&status=open&jurisdiction_id=city.gov"
)
SPEC_REQUEST_URL = SPEC_BASE + "/requests/123456.xml?jurisdiction_id=city.gov"
SPEC_TOKEN_URL = SPEC_BASE + "/tokens/123456.xml?jurisdiction_id=city.gov"
SPEC_POST_PATH = "/dev/v2/requests.xml"
SPEC_POST_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
SPEC_POST_BODY = (
    "api_key=xyz&jurisdiction_id=city.gov&service_code=001&lat=37.76524078&long=-122.4212043"
    "&address_string=1234+5th+street&email=smit333%40sfgov.edu&device_id=tt222111"
    "&account_id=123456&first_name=john&last_name=smith&phone=111111111"
    "&description=A+large+sinkhole+is+destroying+the+street"
    "&media_url=http%3A%2F%2Ffarm3.static.flickr.com%2F2002%2F2212426634_5ed477a060.jpg"
    "&attribute[WHISPAWN]=123456&attribute[WHISDORN]=COISL001"
)

SPEC_SERVICES_XML = """<?xml version="1.0" encoding="utf-8"?>
<services>
    <service>
        <service_code>001</service_code>
        <service_name>Cans left out 24x7</service_name>
        <description>Garbage or recycling cans that have been left out for more than 24 hours after collection. Violators will be cited.</description>
        <metadata>true</metadata>
        <type>realtime</type>
        <keywords>lorem, ipsum, dolor</keywords>
        <group>sanitation</group>
    </service>
    <service>
        <service_code>002</service_code>
        <metadata>true</metadata>
        <type>realtime</type>
        <keywords>lorem, ipsum, dolor</keywords>
        <group>street</group>
        <service_name>Construction plate shifted</service_name>
        <description>Metal construction plate covering the street or sidewalk has been moved.</description>
    </service>
    <service>
        <service_code>003</service_code>
        <metadata>true</metadata>
        <type>realtime</type>
        <keywords>lorem, ipsum, dolor</keywords>
        <group>street</group>
        <service_name>Curb or curb ramp defect</service_name>
        <description>Sidewalk curb or ramp has problems such as cracking, missing pieces, holes, and/or chipped curb.</description>
    </service>
</services>"""  # noqa: E501

SPEC_SERVICES_JSON = """[
  {
    "service_code":001,
    "service_name":"Cans left out 24x7",
    "description":"Garbage or recycling cans that have been left out for more than 24 hours after collection. Violators will be cited.",
    "metadata":true,
    "type":"realtime",
    "keywords":"lorem, ipsum, dolor",
    "group":"sanitation"
  }
]"""  # noqa: E501

SPEC_DEFINITION_XML = """<?xml version="1.0" encoding="utf-8"?>
<service_definition>
    <service_code>DMV66</service_code>
    <attributes>
        <attribute>
            <variable>true</variable>
            <code>WHISHETN</code>
            <datatype>singlevaluelist</datatype>
            <required>true</required>
            <datatype_description></datatype_description>
            <order>1</order>
            <description>What is the ticket/tag/DL number?</description>
            <values>
                <value>
                    <key>123</key>
                    <name>Ford</name>
                </value>
                <value>
                    <key>124</key>
                    <name>Chrysler</name>
                </value>
            </values>
        </attribute>
    </attributes>
</service_definition>"""

SPEC_DEFINITION_JSON = """{
  "service_code":"DMV66",
  "attributes":[
    {
      "variable":true,
      "code":"WHISHETN",
      "datatype":"singlevaluelist",
      "required":true,
      "datatype_description":null,
      "order":1,
      "description":"What is the ticket/tag/DL number?",
      "values":[
        {
          "key":123,
          "name":"Ford"
        },
        {
          "key":124,
          "name":"Chrysler"
        }
      ]
    }
  ]
}"""

SPEC_POST_RESPONSE_XML = """<?xml version="1.0" encoding="utf-8"?>
<service_requests>
    <request>
        <service_request_id>293944</service_request_id>
        <service_notice>
            The City will inspect and require the responsible party to correct within 24 hours and/or issue a Correction Notice or Notice of Violation of the Public Works Code
        </service_notice>
        <account_id/>
    </request>
</service_requests>"""  # noqa: E501

SPEC_POST_RESPONSE_JSON = """[
  {
    "service_request_id":293944,
    "service_notice":"The City will inspect and require the responsible party to correct within 24 hours and/or issue a Correction Notice or Notice of Violation of the Public Works Code",
    "account_id":null
  }
]"""  # noqa: E501

SPEC_TOKEN_XML = """<?xml version="1.0" encoding="utf-8"?>
<service_requests>
    <request>
        <service_request_id>638344</service_request_id>
        <token>12345</token>
    </request>
</service_requests>"""

SPEC_TOKEN_JSON = """[
  {
    "service_request_id":638344,
    "token":12345
  }
]"""

SPEC_REQUESTS_XML = """<?xml version="1.0" encoding="utf-8"?>
<service_requests>
    <request>
        <service_request_id>638344</service_request_id>
        <status>closed</status>
        <status_notes>Duplicate request.</status_notes>
        <service_name>Sidewalk and Curb Issues</service_name>
        <service_code>006</service_code>
        <description></description>
        <agency_responsible></agency_responsible>
        <service_notice></service_notice>
        <requested_datetime>2010-04-14T06:37:38-08:00</requested_datetime>
        <updated_datetime>2010-04-14T06:37:38-08:00</updated_datetime>
        <expected_datetime>2010-04-15T06:37:38-08:00</expected_datetime>
        <address>8TH AVE and JUDAH ST</address>
        <address_id>545483</address_id>
        <zipcode>94122</zipcode>
        <lat>37.762221815</lat>
        <long>-122.4651145</long>
        <media_url>http://city.gov.s3.amazonaws.com/requests/media/638344.jpg </media_url>
    </request>
    <request>
        <service_request_id>638349</service_request_id>
        <status>open</status>
        <status_notes></status_notes>
        <service_name>Sidewalk and Curb Issues</service_name>
        <service_code>006</service_code>
        <description></description>
        <agency_responsible></agency_responsible>
        <service_notice></service_notice>
        <requested_datetime>2010-04-19T06:37:38-08:00</requested_datetime>
        <updated_datetime>2010-04-19T06:37:38-08:00</updated_datetime>
        <expected_datetime>2010-04-19T06:37:38-08:00</expected_datetime>
        <address>8TH AVE and JUDAH ST</address>
        <address_id>545483</address_id>
        <zipcode>94122</zipcode>
        <lat>37.762221815</lat>
        <long>-122.4651145</long>
        <media_url>http://city.gov.s3.amazonaws.com/requests/media/638349.jpg </media_url>
    </request>
</service_requests>"""

SPEC_REQUESTS_JSON = """[
  {
    "service_request_id":638344,
    "status":"closed",
    "status_notes":"Duplicate request.",
    "service_name":"Sidewalk and Curb Issues",
    "service_code":006,
    "description":null,
    "agency_responsible":null,
    "service_notice":null,
    "requested_datetime":"2010-04-14T06:37:38-08:00",
    "updated_datetime":"2010-04-14T06:37:38-08:00",
    "expected_datetime":"2010-04-15T06:37:38-08:00",
    "address":"8TH AVE and JUDAH ST",
    "address_id":545483,
    "zipcode":94122,
    "lat":37.762221815,
    "long":-122.4651145,
    "media_url":"http://city.gov.s3.amazonaws.com/requests/media/638344.jpg "
  }
]"""

SPEC_ERROR_XML = """<?xml version="1.0" encoding="utf-8"?>
<errors>
    <error>
        <code>403</code>
        <description>Invalid api_key received -- can't proceed with create_request.</description>
    </error>
</errors>"""

SPEC_ERROR_JSON = """[
  {
    "code":403,
    "description":"Invalid api_key received -- can't proceed with create_request."
  }
]"""

SPEC_DISCOVERY_XML = """<?xml version="1.0" encoding="UTF-8"?>
<discovery>
    <changeset>2011-02-03 14:18</changeset>
    <contact>You can email or call for assistance api@mycity.org +1 (555) 555-5555</contact>
    <key_service>You can request a key here: http://api.mycity.gov/api_key/request</key_service>
    <endpoints>
        <endpoint>
            <specification>http://wiki.open311.org/GeoReport_v2</specification>
            <url>http://open311.mycity.gov/v2</url>
            <changeset>2010-11-23 09:01</changeset>
            <type>production</type>
            <formats>
                <format>text/xml</format>
            </formats>
        </endpoint>
    </endpoints>
</discovery>"""

SPEC_DISCOVERY_JSON = """{
  "changeset":"2011-02-03 14:18",
  "contact":"You can email or call for assistance api@mycity.org +1 (555) 555-5555",
  "key_service":"You can request a key here: http://api.mycity.gov/api_key/request",
  "endpoints":[
    {
      "specification":"http://wiki.open311.org/GeoReport_v2",
      "url":"http://open311.mycity.gov/v2",
      "changeset":"2010-11-23 09:01",
      "type":"production",
      "formats":[
        "text/xml",
        "application/json"
      ]
    }
  ]
}"""


# --- Reading and comparing ----------------------------------------------------------


def spec_json(text: str):
    """The spec's JSON examples write codes as bare 001: quote them to parse."""
    return json.loads(re.sub(r'(":)(0\d+)(\s*[,}\n])', r'\1"\2"\3', text))


def shape(element: ET.Element) -> tuple:
    """An element's name and the shapes of its children, order and repeats aside."""
    return element.tag, frozenset(shape(child) for child in element)


def keys(value) -> object:
    """The field names of a JSON document, recursively, values aside."""
    if isinstance(value, list):
        return frozenset(keys(item) for item in value)
    if isinstance(value, dict):
        return frozenset((key, keys(item)) for key, item in value.items())
    return None


def our_path(spec_url: str) -> str:
    return spec_url.replace(SPEC_BASE, OUR_BASE)


def as_json(spec_url: str) -> str:
    return spec_url.replace(".xml?", ".json?")


def xml_of(response) -> ET.Element:
    assert response.headers["content-type"] == "text/xml; charset=utf-8", response.text
    assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(response.content)


def json_of(response):
    assert response.headers["content-type"] == "application/json; charset=utf-8", response.text
    return response.json()


# --- Fixtures -----------------------------------------------------------------------


@pytest.fixture
def vigie_config_dir(tmp_path, request):
    return write_spec_city(tmp_path / "config", getattr(request, "param", ""))


@pytest.fixture
def client(vigie_api):
    add_api_key(vigie_api.runtime, "xyz", ("city",))
    return vigie_api.client


def post_spec_example(client, fmt: str = "xml", body: str = SPEC_POST_BODY):
    path = SPEC_POST_PATH.replace("/dev/v2", OUR_BASE).replace(".xml", f".{fmt}")
    return client.post(path, content=body, headers={"Content-Type": SPEC_POST_CONTENT_TYPE})


def stored_sidewalk_tickets(runtime) -> tuple[str, str]:
    """The two requests of the spec's GET requests example: one closed as a
    duplicate ("Duplicate request."), one open, both made in the asked window."""
    location = Location(37.762221815, -122.4651145, "8TH AVE and JUDAH ST")
    references = []
    with runtime.sessions() as session:
        for _ in range(2):
            report = Report(
                commune="city",
                category="006",
                description="Sidewalk cracked",
                channel="phone",
                location=location,
            )
            references.append(accept_signal(runtime, session, report, "test").ticket.reference)
        session.commit()
        closed, original = (find_ticket(session, ref) for ref in references)
        mark_duplicate(runtime, session, closed, original, "agent:test", "Duplicate request.")
        session.execute(
            update(Ticket).values(created_at=datetime(2010, 6, 1, 14, 37, 38, tzinfo=UTC))
        )
        session.commit()
    return references[0], references[1]


# --- Discovery --------------------------------------------------------------------


def test_discovery_has_the_spec_example_elements(client):
    document = xml_of(client.get("/open311/discovery.xml"))
    assert shape(document) == shape(ET.fromstring(SPEC_DISCOVERY_XML))
    endpoint = spark(document)["endpoints"][0]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"] == "http://testserver/open311/v2"
    assert endpoint["type"] == "production"
    assert endpoint["formats"] == ["text/xml", "application/json"]
    body = json_of(client.get("/open311/discovery.json"))
    assert keys(body) == keys(spec_json(SPEC_DISCOVERY_JSON))
    assert body["endpoints"][0]["formats"] == ["text/xml", "application/json"]


# --- GET Service List -------------------------------------------------------------


def test_service_list_answers_the_spec_sample_url_as_the_spec_example(client):
    response = client.get(our_path(SPEC_SERVICES_URL))
    assert response.status_code == 200
    document = xml_of(response)
    example = ET.fromstring(SPEC_SERVICES_XML)
    assert shape(document) == shape(example)
    ours = spark(document)
    expected = spark(example)
    # The example city's first three services are the spec's, field for field.
    assert ours[:3] == expected
    assert [s["service_code"] for s in ours] == ["001", "002", "003", "006", "033"]
    assert {s["service_code"]: s["metadata"] for s in ours}["006"] == "false"


def test_service_list_in_json_has_the_spec_example_fields(client):
    body = json_of(client.get(our_path(as_json(SPEC_SERVICES_URL))))
    example = spec_json(SPEC_SERVICES_JSON)
    assert keys(body) == keys(example)
    assert body[0] == example[0]  # service_code is a string: "001", not the number 1
    assert body[0]["metadata"] is True


# --- GET Service Definition ---------------------------------------------------------


def test_service_definition_answers_the_spec_sample_url_as_the_spec_example(client):
    response = client.get(our_path(SPEC_DEFINITION_URL))
    assert response.status_code == 200
    document = xml_of(response)
    example = ET.fromstring(SPEC_DEFINITION_XML)
    assert shape(document) == shape(example)
    ours, expected = spark(document), spark(example)
    assert ours["service_code"] == "033"
    attribute, spec_attribute = ours["attributes"][0], expected["attributes"][0]
    assert attribute == {**spec_attribute, "code": "whishetn"}


def test_service_definition_in_json_has_the_spec_example_fields(client):
    body = json_of(client.get(our_path(as_json(SPEC_DEFINITION_URL))))
    example = spec_json(SPEC_DEFINITION_JSON)
    assert keys(body) == keys(example)
    attribute = body["attributes"][0]
    assert attribute["variable"] is True and attribute["required"] is True
    assert attribute["order"] == 1 and attribute["datatype_description"] is None
    assert attribute["values"] == [
        {"key": "123", "name": "Ford"},
        {"key": "124", "name": "Chrysler"},
    ]


def test_service_definition_datatypes_cover_every_question_type(client):
    by_code = {}
    for code in ("001", "002", "003"):
        body = json_of(client.get(f"{OUR_BASE}/services/{code}.json"))
        by_code |= {a["code"]: a for a in body["attributes"]}
        assert [a["order"] for a in body["attributes"]] == list(
            range(1, len(body["attributes"]) + 1)
        )
    assert by_code["whispawn"]["datatype"] == "string"
    assert by_code["details"]["datatype"] == "text"
    assert by_code["plate_size"]["datatype"] == "number"
    assert by_code["pieces"]["datatype"] == "number"
    assert "whole number" in by_code["pieces"]["datatype_description"]
    assert by_code["since"]["datatype"] == "datetime"
    assert by_code["blocking"]["datatype"] == "singlevaluelist"
    assert [v["key"] for v in by_code["blocking"]["values"]] == ["true", "false"]
    assert "fixed first" in by_code["blocking"]["description"]
    assert by_code["hazards"]["datatype"] == "multivaluelist"
    assert [v["key"] for v in by_code["hazards"]["values"]] == ["cars", "bikes", "walkers"]
    assert "values" not in by_code["whispawn"]


def test_unknown_and_unpublished_services_are_404(client):
    for code in ("999", "internal"):
        response = client.get(f"{OUR_BASE}/services/{code}.xml?jurisdiction_id=city.gov")
        assert response.status_code == 404
        assert shape(xml_of(response)) == shape(ET.fromstring(SPEC_ERROR_XML))
    listed = json_of(client.get(f"{OUR_BASE}/services.json"))
    assert "internal" not in {s["service_code"] for s in listed}


# --- POST Service Request -----------------------------------------------------------


def test_post_request_accepts_the_spec_example_body_unchanged(client, vigie_api):
    response = post_spec_example(client, "xml")
    assert response.status_code == 201, response.text
    document = xml_of(response)
    example = ET.fromstring(SPEC_POST_RESPONSE_XML)
    assert shape(document) == shape(example)
    request = spark(document)[0]
    assert re.fullmatch(r"CTY-\d{4}-000001", request["service_request_id"])
    assert request["service_notice"] == spark(example)[0]["service_notice"].strip()
    assert request["account_id"] is None
    with vigie_api.runtime.sessions() as session:
        ticket = find_ticket(session, request["service_request_id"])
        assert ticket.channel == "app"
        assert ticket.answers == {"whispawn": "123456", "whisdorn": "COISL001"}
        assert (ticket.latitude, ticket.longitude) == (37.76524078, -122.4212043)
        assert ticket.address == "1234 5th street"
        report = ticket.reports[0]
        assert (report.reporter_name, report.reporter_email, report.reporter_phone) == (
            "john smith",
            "smit333@sfgov.edu",
            "111111111",
        )
        assert report.details["open311"]["device_id"] == "tt222111"


def test_post_request_in_json_has_the_spec_example_fields(client):
    response = post_spec_example(client, "json")
    assert response.status_code == 201, response.text
    body = json_of(response)
    assert keys(body) == keys(spec_json(SPEC_POST_RESPONSE_JSON))
    assert body[0]["account_id"] is None
    assert isinstance(body[0]["service_request_id"], str)


def test_the_requests_the_spec_example_created_read_back_without_personal_data(client):
    created = spark(xml_of(post_spec_example(client)))[0]
    reference = created["service_request_id"]
    for fmt in ("xml", "json"):
        for path in (
            f"requests/{reference}.{fmt}",
            f"requests.{fmt}",
            f"requests/{reference}/updates.{fmt}",
            f"servicerequestupdates.{fmt}",
        ):
            response = client.get(f"{OUR_BASE}/{path}?jurisdiction_id=city.gov")
            assert response.status_code == 200, response.text
            assert reference in response.text
            for personal in (
                "smit333",
                "sfgov.edu",
                "tt222111",
                "john",
                "smith",
                "111111111",
                "account_id>123456",
                '"123456"',
            ):
                assert personal not in response.text, (path, personal)
    request = json_of(client.get(f"{OUR_BASE}/requests/{reference}.json"))[0]
    assert request["media_url"] == "http://farm3.static.flickr.com/2002/2212426634_5ed477a060.jpg"
    assert request["description"] == "A large sinkhole is destroying the street"
    assert request["agency_responsible"] == "Department of Public Works"


# --- GET Service Requests and GET Service Request -----------------------------------


def test_request_list_answers_the_spec_sample_url_as_the_spec_example(client, vigie_api):
    closed, still_open = stored_sidewalk_tickets(vigie_api.runtime)
    response = client.get(our_path(SPEC_REQUESTS_URL))
    assert response.status_code == 200, response.text
    document = xml_of(response)
    assert shape(document) == shape(ET.fromstring(SPEC_REQUESTS_XML))
    requests = spark(document)
    assert [r["service_request_id"] for r in requests] == [still_open]  # status=open
    request = requests[0]
    assert request["status"] == "open"
    assert (request["service_name"], request["service_code"]) == ("Sidewalk and Curb Issues", "006")
    assert request["address"] == "8TH AVE and JUDAH ST"
    assert (request["lat"], request["long"]) == ("37.762221815", "-122.4651145")
    # In the commune's own zone, like the spec's -08:00 (June: daylight saving, -07:00).
    assert request["requested_datetime"] == "2010-06-01T07:37:38-07:00"
    for field in ("requested_datetime", "updated_datetime"):
        assert W3C.match(request[field])


def test_request_list_in_json_has_the_spec_example_fields(client, vigie_api):
    closed, still_open = stored_sidewalk_tickets(vigie_api.runtime)
    everything = our_path(as_json(SPEC_REQUESTS_URL)).replace("&status=open", "")
    body = json_of(client.get(everything))
    assert keys(body) == keys(spec_json(SPEC_REQUESTS_JSON))
    by_id = {r["service_request_id"]: r for r in body}
    assert by_id[closed]["status"] == "closed"
    assert by_id[closed]["status_notes"] == "duplicate: Duplicate request."
    assert by_id[still_open]["status"] == "open"
    assert isinstance(by_id[still_open]["lat"], float)


def test_one_request_answers_the_spec_sample_url_shape(client, vigie_api):
    missing = client.get(our_path(SPEC_REQUEST_URL))
    assert missing.status_code == 404
    assert shape(xml_of(missing)) == shape(ET.fromstring(SPEC_ERROR_XML))
    closed, _open = stored_sidewalk_tickets(vigie_api.runtime)
    response = client.get(our_path(SPEC_REQUEST_URL).replace("123456", closed))
    assert response.status_code == 200
    document = xml_of(response)
    example = ET.fromstring(SPEC_REQUESTS_XML)
    assert shape(document) == shape(example)
    assert spark(document)[0]["status_notes"] == "duplicate: Duplicate request."


# --- GET service_request_id from a token ------------------------------------------------


def test_unknown_token_of_the_spec_sample_url_is_404(client):
    response = client.get(our_path(SPEC_TOKEN_URL))
    assert response.status_code == 404
    assert shape(xml_of(response)) == shape(ET.fromstring(SPEC_ERROR_XML))


@pytest.mark.parametrize("vigie_config_dir", ['service_type = "batch"'], indirect=True)
def test_batch_service_answers_a_token_that_gives_the_request_id(client):
    services = json_of(client.get(f"{OUR_BASE}/services.json"))
    assert {s["type"] for s in services} == {"batch"}
    created = json_of(post_spec_example(client, "json"))[0]
    assert "service_request_id" not in created  # the spec: never both
    token = created["token"]
    response = client.get(our_path(SPEC_TOKEN_URL).replace("123456", token))
    assert response.status_code == 200
    document = xml_of(response)
    assert shape(document) == shape(ET.fromstring(SPEC_TOKEN_XML))
    answer = spark(document)[0]
    assert answer["token"] == token and answer["service_request_id"].startswith("CTY-")
    body = json_of(client.get(f"{OUR_BASE}/tokens/{token}.json"))
    assert keys(body) == keys(spec_json(SPEC_TOKEN_JSON))


# --- Errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("api_key", ["wrong", ""])
def test_a_missing_or_invalid_api_key_is_the_spec_403(client, api_key, stored_counts):
    body = SPEC_POST_BODY.replace("api_key=xyz", f"api_key={api_key}")
    response = post_spec_example(client, "xml", body)
    assert response.status_code == 403
    document = xml_of(response)
    assert shape(document) == shape(ET.fromstring(SPEC_ERROR_XML))
    error = spark(document)[0]
    assert error["code"] == "403" and "api_key" in error["description"]
    response = post_spec_example(client, "json", body)
    assert response.status_code == 403
    assert keys(json_of(response)) == keys(spec_json(SPEC_ERROR_JSON))
    assert stored_counts() == (0, 0)


def test_a_token_of_another_role_or_commune_is_refused(client, vigie_api):
    add_api_key(vigie_api.runtime, "staff-key", ("city",), role="agent")
    add_api_key(vigie_api.runtime, "elsewhere", ("nowhere",))
    for key in ("staff-key", "elsewhere"):
        body = SPEC_POST_BODY.replace("api_key=xyz", f"api_key={key}")
        assert post_spec_example(client, "json", body).status_code == 403


# --- Both formats say the same ------------------------------------------------------


def test_xml_and_json_carry_the_same_values(client, vigie_api):
    created = json_of(post_spec_example(client, "json"))[0]["service_request_id"]
    stored_sidewalk_tickets(vigie_api.runtime)
    for path in (
        "services",
        "services/003",
        "requests",
        f"requests/{created}",
        f"requests/{created}/updates",
        "servicerequestupdates",
        "tokens/00",
    ):
        as_xml = client.get(f"{OUR_BASE}/{path}.xml?jurisdiction_id=city.gov")
        in_json = client.get(f"{OUR_BASE}/{path}.json?jurisdiction_id=city.gov")
        assert as_xml.status_code == in_json.status_code
        assert spark(xml_of(as_xml)) == as_text(json_of(in_json)), path
    for path in ("/open311/discovery",):
        assert spark(xml_of(client.get(path + ".xml"))) == as_text(
            json_of(client.get(path + ".json"))
        )


@pytest.fixture
def stored_counts(vigie_api):
    from sqlalchemy import func, select

    from core.db.models import SignalRecord

    def count() -> tuple[int, int]:
        with vigie_api.runtime.sessions() as session:
            return (
                session.scalar(select(func.count()).select_from(Ticket)),
                session.scalar(select(func.count()).select_from(SignalRecord)),
            )

    return count
