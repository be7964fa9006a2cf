"""The seeded Science-T2I taxonomy: 3 disciplines and 16 tasks (code, name, discipline, ST/CT).

Used by the data migration; admins add more in the Django admin or the API.
"""

DISCIPLINES = [("physics", "Physics"), ("chemistry", "Chemistry"), ("biology", "Biology")]

TASKS = [
    ("GR", "Gravity", "physics", "CT"),
    ("SO", "Solidification", "physics", "CT"),
    ("ME", "Melting", "physics", "CT"),
    ("AB", "Absorption", "physics", "ST"),
    ("BU", "Buoyancy", "physics", "ST"),
    ("DI", "Diffusion", "physics", "ST"),
    ("EL", "Electricity", "physics", "CT"),
    ("EV", "Evaporation", "physics", "CT"),
    ("LI", "Liquefaction", "physics", "CT"),
    ("RU", "Rust", "chemistry", "CT"),
    ("IM", "Immiscibility", "chemistry", "ST"),
    ("FR", "Flame reaction", "chemistry", "ST"),
    ("LR", "Light requirement", "biology", "CT"),
    ("WR", "Watering requirement", "biology", "CT"),
    ("SC", "Seasonal change", "biology", "ST"),
    ("RI", "Ripeness", "biology", "CT"),
]
