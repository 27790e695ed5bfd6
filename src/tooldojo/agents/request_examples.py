"""Style examples for the user simulator: how a person turns a goal into a message.

Written for this project by hand (none comes from BFCL or any benchmark). Each example pairs a
goal and its details, in the form the simulator's prompt shows them, with the message a
person would send: the details woven into prose, never listed as ``name: value`` fields. The
simulator shows a few of them, preferring the scenario's style, before the goal it must phrase.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StyleExample:
    style: str
    goal: str
    details: dict[str, Any] = field(default_factory=dict)
    request: str = ""


EXAMPLES: tuple[StyleExample, ...] = (
    # terse
    StyleExample(
        "terse",
        "get the weather forecast for a city",
        {"city": "Lisbon", "days": 3},
        "3-day forecast for Lisbon?",
    ),
    StyleExample(
        "terse",
        "convert an amount between currencies",
        {"amount": 250, "from currency": "USD", "to currency": "JPY"},
        "250 USD in JPY?",
    ),
    StyleExample(
        "terse",
        "look up a book by its ISBN",
        {"isbn": "9780140449136"},
        "Need the details for ISBN 9780140449136.",
    ),
    StyleExample(
        "terse",
        "list open support tickets",
        {"status": "open", "limit": 20},
        "Show me the first 20 open tickets.",
    ),
    StyleExample(
        "terse",
        "compute the distance between two points",
        {"x1": 0, "y1": 0, "x2": 3, "y2": 4},
        "Distance from (0, 0) to (3, 4)?",
    ),
    StyleExample("terse", "cancel an order", {"order id": "ORD-5521"}, "Cancel ORD-5521."),
    StyleExample(
        "terse",
        "find restaurants nearby",
        {"cuisine": "thai", "city": "Leeds", "max results": 5},
        "Top 5 Thai places in Leeds.",
    ),
    StyleExample("terse", "get a stock quote", {"symbol": "NVDA"}, "NVDA price now?"),
    # chatty
    StyleExample(
        "chatty",
        "book a table at a restaurant",
        {"restaurant": "Casa Lupo", "party size": 4, "date": "2025-06-14", "time": "19:30"},
        "Hi! My parents are visiting next month, so I'd love a table for 4 at Casa "
        "Lupo on June 14, 2025 at 19:30. Thanks a ton!",
    ),
    StyleExample(
        "chatty",
        "add an event to the calendar",
        {"title": "Dentist", "start": "2025-03-03T09:00", "duration minutes": 45},
        "Ugh, I almost forgot - can you put my Dentist appointment in the calendar "
        "for March 3, 2025 at 09:00? It usually takes about 45 minutes.",
    ),
    StyleExample(
        "chatty",
        "search for flights",
        {"origin": "OSL", "destination": "ATH", "date": "2025-07-02"},
        "Hello! Dreaming of some sun - could you look for flights from OSL to ATH on July 2, 2025?",
    ),
    StyleExample(
        "chatty",
        "compute a tip",
        {"bill amount": 86.4, "tip percent": 18},
        "We just had a lovely dinner! The bill came to 86.4 - what would an 18% tip be?",
    ),
    StyleExample(
        "chatty",
        "translate a sentence",
        {"text": "Where is the train station?", "target language": "Portuguese"},
        'Off to Porto next week, so exciting! How do I say "Where is the train '
        'station?" in Portuguese?',
    ),
    StyleExample(
        "chatty",
        "create a shopping list item",
        {"item": "oat milk", "quantity": 2},
        "Oh, before I forget - please add 2 oat milk to my list, we're all out!",
    ),
    StyleExample(
        "chatty",
        "check a package's delivery status",
        {"tracking number": "1Z999AA10123456784"},
        "Hey there! My parcel still hasn't shown up. Could you check where 1Z999AA10123456784 is?",
    ),
    StyleExample(
        "chatty",
        "get song lyrics information",
        {"artist": "Nina Simone", "song": "Feeling Good"},
        "I've had Feeling Good by Nina Simone stuck in my head all day - can you find info on it?",
    ),
    # non-native
    StyleExample(
        "non-native",
        "find hotels in a city",
        {"city": "Vienna", "check in": "2025-05-10", "nights": 2},
        "Hello, I search hotel in Vienna for 2 nights, arrive May 10, 2025. You can help?",
    ),
    StyleExample(
        "non-native",
        "convert a temperature",
        {"value": 98.6, "from unit": "fahrenheit", "to unit": "celsius"},
        "Please, 98.6 fahrenheit is how much in celsius? I not understand this unit.",
    ),
    StyleExample(
        "non-native",
        "get the opening hours of a museum",
        {"museum": "Rijksmuseum", "day": "Sunday"},
        "Hi, the Rijksmuseum is open on Sunday? Which hours please?",
    ),
    StyleExample(
        "non-native",
        "send a text message",
        {"phone": "+44 7700 900123", "message": "Running 10 minutes late"},
        'I need send message to +44 7700 900123, say "Running 10 minutes late". Thank you.',
    ),
    StyleExample(
        "non-native",
        "calculate loan payments",
        {"principal": 20000, "annual rate": 4.5, "years": 5},
        "I take loan of 20000 with 4.5 percent for year, 5 years. How much I pay each month?",
    ),
    StyleExample(
        "non-native",
        "list public holidays",
        {"country": "Germany", "year": 2025},
        "Which are the public holiday in Germany for 2025? I want plan my vacation.",
    ),
    StyleExample(
        "non-native",
        "update a user's email",
        {"user id": "u-3391", "email": "k.tanaka@example.org"},
        "Hello, please change email of my account u-3391 to k.tanaka@example.org.",
    ),
    StyleExample(
        "non-native",
        "check air quality",
        {"city": "Delhi"},
        "How is the air in Delhi today? Is good for go running?",
    ),
    # expert
    StyleExample(
        "expert",
        "compute summary statistics",
        {"values": [12.5, 14.1, 9.8, 11.0], "statistic": "median"},
        "Median of 12.5, 14.1, 9.8 and 11.0.",
    ),
    StyleExample(
        "expert",
        "query server metrics",
        {"host": "db-02", "metric": "cpu", "window minutes": 15},
        "Pull cpu on db-02 over the last 15 minutes.",
    ),
    StyleExample(
        "expert",
        "resolve a DNS record",
        {"domain": "example.net", "record type": "MX"},
        "Resolve the MX records for example.net.",
    ),
    StyleExample(
        "expert",
        "solve a quadratic equation",
        {"a": 2, "b": -3, "c": -5},
        "Roots of 2x^2 - 3x - 5 = 0.",
    ),
    StyleExample(
        "expert",
        "look up a gene",
        {"symbol": "BRCA1", "species": "human"},
        "Fetch the human BRCA1 entry.",
    ),
    StyleExample(
        "expert",
        "fetch exchange-traded fund holdings",
        {"ticker": "VTI", "top": 10},
        "Top 10 holdings of VTI, by weight.",
    ),
    StyleExample(
        "expert",
        "run a unit conversion",
        {"value": 42, "from unit": "km", "to unit": "mi"},
        "42 km expressed in miles, please.",
    ),
    StyleExample(
        "expert",
        "list recent commits",
        {"repository": "acme/billing", "branch": "release-2.4", "limit": 5},
        "Last 5 commits on release-2.4 of acme/billing.",
    ),
    # polite
    StyleExample(
        "polite",
        "renew a library loan",
        {"loan id": "L-88213", "weeks": 2},
        "Good afternoon. Would it be possible to extend my loan L-88213 by 2 weeks? "
        "Thank you kindly.",
    ),
    StyleExample(
        "polite",
        "schedule a meeting",
        {"attendee": "Dr. Okafor", "date": "2025-09-22", "time": "14:00"},
        "Hello, could you please arrange a meeting with Dr. Okafor on September 22, "
        "2025 at 14:00? Many thanks.",
    ),
    StyleExample(
        "polite",
        "get nutritional facts",
        {"food": "lentils", "grams": 150},
        "Dear assistant, I would be grateful for the nutritional facts of 150 grams of lentils.",
    ),
    StyleExample(
        "polite",
        "report a broken street light",
        {"street": "Elm Road", "house number": 27},
        "Good morning. I would like to report that the street light outside 27 Elm "
        "Road is broken. Thank you for your help.",
    ),
    StyleExample(
        "polite",
        "find train connections",
        {"from station": "Utrecht", "to station": "Brussels", "date": "2025-04-18"},
        "Hello, might you find me train connections from Utrecht to Brussels on "
        "April 18, 2025? I appreciate it.",
    ),
    StyleExample(
        "polite",
        "compute the area of a circle",
        {"radius": 7.5},
        "Excuse me, could you tell me the area of a circle with a radius of 7.5? Thank you.",
    ),
    StyleExample(
        "polite",
        "look up a word",
        {"word": "ephemeral", "language": "en"},
        'Hello, would you kindly look up the meaning of the English word "ephemeral"? Many thanks.',
    ),
    StyleExample(
        "polite",
        "set a thermostat",
        {"room": "study", "temperature": 21},
        "Good evening. Could you please set the study to 21 degrees? Thank you.",
    ),
)


def details_text(details: dict[str, Any]) -> str:
    """Details as the prompt shows them: each value, then what it is, in parentheses (a form
    a model is less tempted to copy than ``name: value``)."""
    from tooldojo.agents.user import render_value  # the one renderer of values

    return "; ".join(f"{render_value(value)} ({name})" for name, value in details.items())


def draw_examples(style: str, rng: random.Random, k: int = 3) -> list[StyleExample]:
    """``k`` examples, two of the scenario's style when there are, for a few-shot prompt."""
    same = [e for e in EXAMPLES if e.style == style]
    other = [e for e in EXAMPLES if e.style != style]
    chosen = rng.sample(same, min(2, len(same))) + rng.sample(other, k - min(2, len(same)))
    rng.shuffle(chosen)
    return chosen
