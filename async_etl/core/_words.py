"""Built-in word pools for the realistic text generators (names, cities, e-mail, JSON attrs).

A few entries are not ASCII on purpose, so every encoder is exercised with multi-byte UTF-8.
"""

from __future__ import annotations

from typing import Final

FIRST_NAMES: Final[tuple[str, ...]] = (
    "Ada", "Alan", "Alice", "Amir", "Ana", "Anna", "Ben", "Bo", "Carla", "Chen", "Chloé",
    "Dan", "David", "Elena", "Emma", "Eve", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ian",
    "Ines", "Ivan", "Jack", "Jana", "José", "Julia", "Kai", "Karl", "Kenji", "Lars", "Lea",
    "Leo", "Lina", "Luca", "Maja", "Marco", "Maria", "Max", "Mia", "Nadia", "Nils", "Noah",
    "Olga", "Omar", "Paul", "Priya", "Rosa", "Sam", "Sara", "Sofia", "Tom", "Uma", "Vera",
    "Wei", "Yara", "Yusuf", "Zoë", "Zoltan", "Ingrid", "Mateo", "Aiko", "Bernadette",
)  # fmt: skip

LAST_NAMES: Final[tuple[str, ...]] = (
    "Abe", "Adams", "Bauer", "Becker", "Brown", "Castro", "Chen", "Costa", "Davis", "Dubois",
    "Evans", "Fischer", "Garcia", "Gómez", "Hansen", "Hoffmann", "Ito", "Jensen", "Johnson",
    "Kim", "Klein", "Kowalski", "Lee", "Li", "Lopez", "Martin", "Meyer", "Miller", "Moreau",
    "Müller", "Nagy", "Novak", "Nguyen", "Olsen", "Park", "Patel", "Petrov", "Quinn", "Rossi",
    "Sato", "Schmidt", "Schneider", "Silva", "Smith", "Suzuki", "Tanaka", "Taylor", "Wagner",
    "Walker", "Weber", "Wilson", "Wong", "Young", "Zhang", "Ødegaard", "Andersson", "Horvat",
    "Kovač", "Lindqvist", "Fernández", "Van der Berg", "O'Brien", "MacDonald", "Yilmaz",
)  # fmt: skip

CITIES: Final[tuple[str, ...]] = (
    "Amsterdam", "Athens", "Barcelona", "Berlin", "Bogotá", "Boston", "Cairo", "Chicago",
    "Copenhagen", "Dublin", "Dubai", "Graz", "Hamburg", "Helsinki", "Istanbul", "Jakarta",
    "Kraków", "Lagos", "Lima", "Lisbon", "London", "Los Angeles", "Madrid", "Melbourne",
    "Mexico City", "Milan", "Montréal", "Mumbai", "München", "Nairobi", "New York", "Oslo",
    "Paris", "Prague", "Rome", "São Paulo", "Seoul", "Singapore", "Stockholm", "Sydney",
    "Tokyo", "Toronto", "Vienna", "Warsaw", "Zürich",
)  # fmt: skip

EMAIL_DOMAINS: Final[tuple[str, ...]] = (
    "example.com", "example.org", "mail.test", "inbox.test", "corp.example", "shop.test",
)  # fmt: skip

JSON_SOURCES: Final[tuple[str, ...]] = (
    "web", "mobile", "api", "partner", "store", "phone", "email", "import",
)  # fmt: skip

JSON_TAGS: Final[tuple[str, ...]] = ("vip", "gift", "promo", "bulk", "express")

LETTERS: Final[bytes] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
