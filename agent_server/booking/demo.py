"""Demo specialists with schedules: deterministic, varied, fast to load.

``load_demo_data(db, 1000)`` creates a thousand specialists in cities on every continent (each
with its real IANA time zone), speaking the languages of their place, with skills from a
catalogue of professions (law, tax, medicine, design, engineering, coaching, ...), education,
hourly rates, ratings and reviews, and one or two public schedules: weekly hours in local time,
30 to 90 minute slots, buffers, notice, a few blackout dates, prices in USD or USDC, mostly
one-to-one sessions and some group ones. A few schedules are private or deleted, as in real
data. The same seed on the same database gives the same rows. Rows are written with bulk
inserts, so 100,000 specialists load in about a minute.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, insert, select

from agent_server.booking.availability import ScheduleSpec
from agent_server.booking.models import Schedule, Specialist
from agent_server.booking.next_free import next_free_bound
from agent_server.booking.schedules import usd_value
from agent_server.booking.search.text import specialist_search_text
from agent_server.kernel.store import Database
from agent_server.kernel.store.statistics import analyze

CHUNK = 2000
"""Specialists per transaction."""
CATALOGUE_TABLES = ("specialists", "schedules", "bookings")
"""The tables search plans over, analysed once loaded."""


@dataclass(frozen=True)
class City:
    name: str
    country: str
    timezone: str
    languages: tuple[str, ...]
    names: str  # key of NAMES
    phone: str  # country calling code


CITIES: tuple[City, ...] = (
    City("New York", "US", "America/New_York", ("en", "es"), "en", "1"),
    City("San Francisco", "US", "America/Los_Angeles", ("en", "es", "zh"), "en", "1"),
    City("Chicago", "US", "America/Chicago", ("en", "es", "pl"), "en", "1"),
    City("Austin", "US", "America/Chicago", ("en", "es"), "en", "1"),
    City("Denver", "US", "America/Denver", ("en",), "en", "1"),
    City("Seattle", "US", "America/Los_Angeles", ("en", "zh"), "en", "1"),
    City("Toronto", "CA", "America/Toronto", ("en", "fr"), "en", "1"),
    City("Montreal", "CA", "America/Toronto", ("fr", "en"), "fr", "1"),
    City("Vancouver", "CA", "America/Vancouver", ("en", "zh"), "en", "1"),
    City("Mexico City", "MX", "America/Mexico_City", ("es", "en"), "es", "52"),
    City("Bogotá", "CO", "America/Bogota", ("es", "en"), "es", "57"),
    City("Lima", "PE", "America/Lima", ("es",), "es", "51"),
    City("Santiago", "CL", "America/Santiago", ("es", "en"), "es", "56"),
    City("Buenos Aires", "AR", "America/Argentina/Buenos_Aires", ("es", "en", "it"), "es", "54"),
    City("São Paulo", "BR", "America/Sao_Paulo", ("pt", "en", "es"), "pt", "55"),
    City("Rio de Janeiro", "BR", "America/Sao_Paulo", ("pt", "en"), "pt", "55"),
    City("London", "GB", "Europe/London", ("en", "fr"), "en", "44"),
    City("Manchester", "GB", "Europe/London", ("en",), "en", "44"),
    City("Dublin", "IE", "Europe/Dublin", ("en", "ga"), "en", "353"),
    City("Lisbon", "PT", "Europe/Lisbon", ("pt", "en"), "pt", "351"),
    City("Madrid", "ES", "Europe/Madrid", ("es", "en"), "es", "34"),
    City("Barcelona", "ES", "Europe/Madrid", ("es", "ca", "en"), "es", "34"),
    City("Paris", "FR", "Europe/Paris", ("fr", "en"), "fr", "33"),
    City("Lyon", "FR", "Europe/Paris", ("fr",), "fr", "33"),
    City("Brussels", "BE", "Europe/Brussels", ("fr", "nl", "en"), "fr", "32"),
    City("Amsterdam", "NL", "Europe/Amsterdam", ("nl", "en", "de"), "nl", "31"),
    City("Berlin", "DE", "Europe/Berlin", ("de", "en"), "de", "49"),
    City("Munich", "DE", "Europe/Berlin", ("de", "en"), "de", "49"),
    City("Hamburg", "DE", "Europe/Berlin", ("de", "en"), "de", "49"),
    City("Zurich", "CH", "Europe/Zurich", ("de", "fr", "en"), "de", "41"),
    City("Vienna", "AT", "Europe/Vienna", ("de", "en"), "de", "43"),
    City("Milan", "IT", "Europe/Rome", ("it", "en"), "it", "39"),
    City("Rome", "IT", "Europe/Rome", ("it", "en"), "it", "39"),
    City("Copenhagen", "DK", "Europe/Copenhagen", ("da", "en"), "nordic", "45"),
    City("Stockholm", "SE", "Europe/Stockholm", ("sv", "en"), "nordic", "46"),
    City("Oslo", "NO", "Europe/Oslo", ("no", "en"), "nordic", "47"),
    City("Helsinki", "FI", "Europe/Helsinki", ("fi", "sv", "en"), "nordic", "358"),
    City("Warsaw", "PL", "Europe/Warsaw", ("pl", "en"), "pl", "48"),
    City("Prague", "CZ", "Europe/Prague", ("cs", "en"), "pl", "420"),
    City("Athens", "GR", "Europe/Athens", ("el", "en"), "el", "30"),
    City("Istanbul", "TR", "Europe/Istanbul", ("tr", "en"), "tr", "90"),
    City("Kyiv", "UA", "Europe/Kyiv", ("uk", "en", "ru"), "ua", "380"),
    City("Tel Aviv", "IL", "Asia/Jerusalem", ("he", "en", "ru"), "he", "972"),
    City("Dubai", "AE", "Asia/Dubai", ("ar", "en", "hi"), "ar", "971"),
    City("Cairo", "EG", "Africa/Cairo", ("ar", "en"), "ar", "20"),
    City("Casablanca", "MA", "Africa/Casablanca", ("ar", "fr", "en"), "ar", "212"),
    City("Lagos", "NG", "Africa/Lagos", ("en", "yo", "ig"), "ng", "234"),
    City("Accra", "GH", "Africa/Accra", ("en", "tw"), "ng", "233"),
    City("Nairobi", "KE", "Africa/Nairobi", ("en", "sw"), "ke", "254"),
    City("Cape Town", "ZA", "Africa/Johannesburg", ("en", "af", "xh"), "za", "27"),
    City("Johannesburg", "ZA", "Africa/Johannesburg", ("en", "zu", "af"), "za", "27"),
    City("Mumbai", "IN", "Asia/Kolkata", ("en", "hi", "mr"), "in", "91"),
    City("Bengaluru", "IN", "Asia/Kolkata", ("en", "hi", "kn"), "in", "91"),
    City("Delhi", "IN", "Asia/Kolkata", ("en", "hi"), "in", "91"),
    City("Karachi", "PK", "Asia/Karachi", ("ur", "en"), "in", "92"),
    City("Singapore", "SG", "Asia/Singapore", ("en", "zh", "ms"), "sg", "65"),
    City("Jakarta", "ID", "Asia/Jakarta", ("id", "en"), "id", "62"),
    City("Bangkok", "TH", "Asia/Bangkok", ("th", "en"), "th", "66"),
    City("Manila", "PH", "Asia/Manila", ("en", "tl"), "ph", "63"),
    City("Ho Chi Minh City", "VN", "Asia/Ho_Chi_Minh", ("vi", "en"), "vn", "84"),
    City("Hong Kong", "HK", "Asia/Hong_Kong", ("zh", "en"), "zh", "852"),
    City("Shanghai", "CN", "Asia/Shanghai", ("zh", "en"), "zh", "86"),
    City("Taipei", "TW", "Asia/Taipei", ("zh", "en"), "zh", "886"),
    City("Seoul", "KR", "Asia/Seoul", ("ko", "en"), "ko", "82"),
    City("Tokyo", "JP", "Asia/Tokyo", ("ja", "en"), "ja", "81"),
    City("Osaka", "JP", "Asia/Tokyo", ("ja",), "ja", "81"),
    City("Sydney", "AU", "Australia/Sydney", ("en", "zh"), "en", "61"),
    City("Melbourne", "AU", "Australia/Melbourne", ("en", "el", "it"), "en", "61"),
    City("Perth", "AU", "Australia/Perth", ("en",), "en", "61"),
    City("Auckland", "NZ", "Pacific/Auckland", ("en", "mi"), "en", "64"),
    City("Honolulu", "US", "Pacific/Honolulu", ("en", "ja"), "en", "1"),
    City("Reykjavik", "IS", "Atlantic/Reykjavik", ("is", "en"), "nordic", "354"),
)

# Data tables, laid out by hand.
# fmt: off
NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (
        ("James", "Olivia", "Michael", "Emma", "David", "Sophia", "Daniel", "Grace", "Ryan",
         "Hannah", "Ethan", "Chloe", "Nathan", "Abigail", "Samuel", "Megan"),
        ("Smith", "Johnson", "Brown", "Taylor", "Walker", "Harris", "Clarke", "Mitchell",
         "Bennett", "Hughes", "Cooper", "Reed", "Foster", "Murphy", "Kelly", "Carter"),
    ),
    "fr": (
        ("Camille", "Louis", "Chloé", "Hugo", "Léa", "Julien", "Manon", "Antoine", "Élodie",
         "Mathieu", "Inès", "Théo"),
        ("Martin", "Bernard", "Dubois", "Lefèvre", "Moreau", "Laurent", "Girard", "Roux",
         "Fontaine", "Chevalier", "Gauthier", "Lambert"),
    ),
    "es": (
        ("Lucía", "Mateo", "Valentina", "Santiago", "Camila", "Diego", "Sofía", "Alejandro",
         "Isabela", "Javier", "Daniela", "Andrés"),
        ("García", "Rodríguez", "Martínez", "López", "Hernández", "González", "Pérez",
         "Sánchez", "Ramírez", "Torres", "Flores", "Vargas"),
    ),
    "pt": (
        ("João", "Ana", "Pedro", "Beatriz", "Lucas", "Mariana", "Gabriel", "Larissa",
         "Rafael", "Fernanda", "Tiago", "Carolina"),
        ("Silva", "Santos", "Oliveira", "Souza", "Costa", "Pereira", "Almeida", "Ferreira",
         "Ribeiro", "Carvalho", "Gomes", "Martins"),
    ),
    "de": (
        ("Lukas", "Anna", "Jonas", "Lea", "Felix", "Laura", "Maximilian", "Sophie", "Paul",
         "Katharina", "Tobias", "Johanna"),
        ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Wagner", "Becker", "Hoffmann",
         "Schäfer", "Koch", "Richter", "Wolf"),
    ),
    "it": (
        ("Giulia", "Marco", "Francesca", "Luca", "Chiara", "Alessandro", "Sara", "Matteo",
         "Elena", "Davide", "Martina", "Lorenzo"),
        ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
         "Marino", "Greco", "Bruno", "Gallo"),
    ),
    "nl": (
        ("Daan", "Emma", "Sem", "Julia", "Lars", "Sanne", "Thijs", "Fleur", "Bram", "Lotte"),
        ("de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit",
         "Meijer", "de Boer", "Mulder"),
    ),
    "nordic": (
        ("Emil", "Ida", "Oskar", "Freja", "Magnus", "Astrid", "Elias", "Maja", "Henrik",
         "Sigrid", "Anders", "Linnea"),
        ("Hansen", "Johansson", "Nielsen", "Larsen", "Andersson", "Lindqvist", "Berg",
         "Virtanen", "Korhonen", "Jónsson", "Dahl", "Eriksen"),
    ),
    "pl": (
        ("Piotr", "Anna", "Tomasz", "Katarzyna", "Jakub", "Agnieszka", "Michał", "Zofia",
         "Jan", "Tereza", "Marek", "Eva"),
        ("Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kamiński", "Novák", "Dvořák",
         "Zieliński", "Szymański", "Svoboda", "Lewandowski", "Kowalczyk"),
    ),
    "el": (
        ("Nikos", "Maria", "Giorgos", "Eleni", "Dimitris", "Katerina", "Yannis", "Sofia"),
        ("Papadopoulos", "Georgiou", "Nikolaou", "Karagiannis", "Vlachos", "Dimitriou",
         "Christodoulou", "Antoniou"),
    ),
    "tr": (
        ("Emre", "Elif", "Mehmet", "Zeynep", "Can", "Ayşe", "Burak", "Selin", "Kerem", "Deniz"),
        ("Kaya", "Demir", "Şahin", "Çelik", "Öztürk", "Arslan", "Doğan", "Koç", "Polat",
         "Yüksel"),
    ),
    "ua": (
        ("Oleksandr", "Olena", "Andriy", "Iryna", "Dmytro", "Natalia", "Serhiy", "Yulia"),
        ("Shevchenko", "Kovalenko", "Bondarenko", "Tkachenko", "Kravchenko", "Melnyk",
         "Oliynyk", "Lysenko"),
    ),
    "he": (
        ("Noa", "Yonatan", "Tamar", "Itai", "Maya", "Eitan", "Shira", "Omer"),
        ("Cohen", "Levi", "Mizrahi", "Peretz", "Biton", "Friedman", "Avraham", "Katz"),
    ),
    "ar": (
        ("Omar", "Layla", "Youssef", "Fatima", "Karim", "Nour", "Hassan", "Salma", "Tarek",
         "Amira", "Khalid", "Yasmin"),
        ("Haddad", "Mansour", "Khalil", "Nasser", "Farouk", "Saleh", "Hamdan", "Aziz",
         "Rahman", "El-Sayed", "Bennani", "Alaoui"),
    ),
    "ng": (
        ("Chinedu", "Ngozi", "Oluwaseun", "Amara", "Emeka", "Folake", "Kwame", "Ama",
         "Tunde", "Adaeze", "Kofi", "Yaa"),
        ("Okafor", "Adeyemi", "Eze", "Okonkwo", "Balogun", "Mensah", "Asante", "Boateng",
         "Nwosu", "Adebayo", "Owusu", "Obi"),
    ),
    "ke": (
        ("Wanjiru", "Otieno", "Achieng", "Kamau", "Njeri", "Mwangi", "Akinyi", "Kiprop"),
        ("Kariuki", "Odhiambo", "Wambui", "Mutua", "Chebet", "Njoroge", "Omondi", "Kiptoo"),
    ),
    "za": (
        ("Thabo", "Naledi", "Sipho", "Lerato", "Pieter", "Anika", "Johan", "Zanele"),
        ("Nkosi", "Dlamini", "van der Merwe", "Botha", "Mokoena", "Naidoo", "Khumalo", "Pillay"),
    ),
    "in": (
        ("Aarav", "Priya", "Rohan", "Ananya", "Vikram", "Diya", "Arjun", "Kavya", "Rahul",
         "Sneha", "Imran", "Ayesha"),
        ("Sharma", "Patel", "Iyer", "Reddy", "Nair", "Gupta", "Mehta", "Rao", "Khan",
         "Desai", "Kulkarni", "Menon"),
    ),
    "sg": (
        ("Wei Ling", "Jun Jie", "Hui Min", "Arun", "Siti", "Marcus", "Priya", "Darren"),
        ("Tan", "Lim", "Lee", "Ng", "Wong", "Rahman", "Goh", "Chua"),
    ),
    "id": (
        ("Budi", "Siti", "Agus", "Dewi", "Rizky", "Putri", "Andi", "Rina"),
        ("Santoso", "Wijaya", "Saputra", "Hidayat", "Kusuma", "Pratama", "Halim", "Nugroho"),
    ),
    "th": (
        ("Somchai", "Nattaya", "Anan", "Ploy", "Kittisak", "Siriporn"),
        ("Srisuk", "Wongsakul", "Chaiyaporn", "Rattanakorn", "Boonmee", "Thongchai"),
    ),
    "ph": (
        ("Maria", "Jose", "Angelica", "Mark", "Kristine", "Paolo", "Bea", "Miguel"),
        ("Santos", "Reyes", "Cruz", "Bautista", "Garcia", "Mendoza", "Villanueva", "Aquino"),
    ),
    "vn": (
        ("Minh", "Linh", "Huy", "Trang", "Duc", "Thao", "Quang", "Mai"),
        ("Nguyen", "Tran", "Le", "Pham", "Hoang", "Vu", "Dang", "Bui"),
    ),
    "zh": (
        ("Wei", "Jing", "Hao", "Mei", "Jun", "Xin", "Lei", "Yan", "Chen", "Ling"),
        ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou"),
    ),
    "ko": (
        ("Minjun", "Seoyeon", "Jiho", "Jiwoo", "Hyunwoo", "Soyeon", "Dohyun", "Yuna"),
        ("Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon"),
    ),
    "ja": (
        ("Haruto", "Yui", "Sota", "Aoi", "Ren", "Hina", "Kenji", "Sakura", "Takumi", "Yuki"),
        ("Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Yamamoto", "Nakamura",
         "Kobayashi", "Kato"),
    ),
}


@dataclass(frozen=True)
class Profession:
    """A profession: its skills, titles, degrees, rate range and a few lines of about text."""

    key: str
    skills: tuple[str, ...]
    titles: tuple[str, ...]
    degrees: tuple[tuple[str, str], ...]
    rate_usd: tuple[int, int]
    clients: tuple[str, ...]
    approach: tuple[str, ...]
    session: str


PROFESSIONS: tuple[Profession, ...] = (
    Profession(
        "law",
        ("contract-law", "employment-law", "immigration-law", "intellectual-property",
         "corporate-law", "family-law", "real-estate-law", "privacy-gdpr", "litigation",
         "startup-law"),
        ("Corporate lawyer", "Immigration attorney", "Employment lawyer", "IP attorney",
         "Family law solicitor", "Privacy counsel", "Startup lawyer", "Real estate attorney"),
        (("LLM", "International Business Law"), ("JD", "Law"), ("LLB", "Law"),
         ("LLM", "Intellectual Property Law")),
        (150, 480),
        ("founders", "families", "small businesses", "expats", "creators", "employers"),
        ("I explain the options in plain language and put the advice in writing after the call.",
         "Bring your documents; we review them together and agree on next steps.",
         "I have negotiated hundreds of agreements and know where the risks usually hide."),
        "consultation",
    ),
    Profession(
        "tax",
        ("tax-planning", "vat", "bookkeeping", "international-tax", "crypto-tax",
         "payroll", "audit", "financial-planning", "startup-fundraising", "accounting"),
        ("Tax advisor", "Chartered accountant", "Certified public accountant",
         "Financial planner", "VAT specialist", "Fractional CFO"),
        (("MSc", "Taxation"), ("BCom", "Accounting"), ("MBA", "Finance"), ("CPA", "Accounting")),
        (90, 320),
        ("freelancers", "e-commerce sellers", "startups", "remote workers", "investors"),
        ("I help you file on time, pay what you owe and not a cent more.",
         "We look at your numbers together and leave with a clear plan for the year.",
         "Cross-border situations are my speciality, from residency to double taxation."),
        "session",
    ),
    Profession(
        "medicine",
        ("general-practice", "dermatology", "pediatrics", "nutrition", "sleep-medicine",
         "cardiology", "sports-medicine", "womens-health", "second-opinion", "travel-medicine"),
        ("General practitioner", "Dermatologist", "Pediatrician", "Clinical nutritionist",
         "Sports physician", "Cardiologist", "Sleep specialist"),
        (("MD", "Medicine"), ("MBBS", "Medicine and Surgery"), ("MSc", "Clinical Nutrition"),
         ("PhD", "Epidemiology")),
        (80, 300),
        ("patients", "parents", "athletes", "travellers", "shift workers"),
        ("Video consultations for questions, results and second opinions; no emergencies.",
         "I take time to listen and explain results clearly, without jargon.",
         "Evidence-based advice, with a written summary after every consultation."),
        "consultation",
    ),
    Profession(
        "mental-health",
        ("psychology", "cbt", "anxiety", "burnout", "couples-therapy", "grief-counselling",
         "mindfulness", "adhd-coaching"),
        ("Clinical psychologist", "Psychotherapist", "Counsellor", "CBT therapist"),
        (("MSc", "Clinical Psychology"), ("PsyD", "Psychology"), ("MA", "Counselling")),
        (70, 220),
        ("adults", "couples", "students", "professionals", "new parents"),
        ("A calm, confidential space to work through what matters to you.",
         "I use evidence-based methods such as CBT and ACT, adapted to each person.",
         "Short-term, goal-focused work with practical exercises between sessions."),
        "session",
    ),
    Profession(
        "design",
        ("ux-design", "ui-design", "branding", "illustration", "product-design",
         "design-systems", "interior-design", "typography", "motion-design", "ux-research"),
        ("Product designer", "UX designer", "Brand designer", "Illustrator",
         "Interior designer", "Design lead"),
        (("BA", "Graphic Design"), ("MA", "Interaction Design"), ("BFA", "Illustration"),
         ("MSc", "Human-Computer Interaction")),
        (50, 200),
        ("startups", "agencies", "product teams", "homeowners", "non-profits"),
        ("Portfolio and design reviews with concrete, prioritised feedback.",
         "From the first sketch to a design system your developers will love.",
         "I run research sessions and turn what users say into clear decisions."),
        "review",
    ),
    Profession(
        "engineering",
        ("python", "javascript", "typescript", "devops", "kubernetes", "data-engineering",
         "machine-learning", "security-audit", "cloud-architecture", "mobile-development",
         "rust", "postgresql", "embedded-systems", "smart-contracts"),
        ("Software engineer", "Staff engineer", "Solutions architect", "Data engineer",
         "Machine learning engineer", "Security consultant", "DevOps engineer",
         "Mobile developer", "Blockchain developer"),
        (("BSc", "Computer Science"), ("MSc", "Software Engineering"), ("PhD", "Machine Learning"),
         ("BEng", "Electrical Engineering")),
        (60, 260),
        ("startups", "scale-ups", "open-source maintainers", "CTOs", "students"),
        ("Pair programming, code and architecture reviews, and debugging sessions.",
         "I have shipped production systems at scale and share what actually works.",
         "Bring a concrete problem; we leave with working code or a clear plan."),
        "session",
    ),
    Profession(
        "structural",
        ("structural-engineering", "architecture", "energy-efficiency", "building-permits",
         "renovation-planning"),
        ("Structural engineer", "Architect", "Energy consultant"),
        (("MSc", "Civil Engineering"), ("MArch", "Architecture"), ("BEng", "Building Services")),
        (80, 250),
        ("homeowners", "developers", "builders", "architects"),
        ("Plan checks, renovation advice and permit questions answered clearly.",
         "I review drawings before you build, when changes are still cheap."),
        "consultation",
    ),
    Profession(
        "coaching",
        ("career-coaching", "executive-coaching", "leadership", "public-speaking",
         "interview-preparation", "negotiation", "life-coaching", "productivity"),
        ("Executive coach", "Career coach", "Leadership coach", "Public speaking coach",
         "Life coach"),
        (("MBA", "Organisational Behaviour"), ("MA", "Psychology"), ("ICF PCC", "Coaching")),
        (60, 350),
        ("managers", "founders", "career changers", "graduates", "executives"),
        ("Practical sessions with clear goals and honest feedback.",
         "I help you prepare for the conversations that shape your career.",
         "Structured coaching that turns intentions into weekly habits."),
        "coaching session",
    ),
    Profession(
        "teaching",
        ("english-tutoring", "spanish-tutoring", "mandarin-tutoring", "german-tutoring",
         "math-tutoring", "physics-tutoring", "test-prep", "music-lessons"),
        ("Language teacher", "Math tutor", "Exam coach", "Music teacher", "Physics tutor"),
        (("BA", "Linguistics"), ("MSc", "Mathematics"), ("MEd", "Education"),
         ("BMus", "Music Performance")),
        (20, 90),
        ("students", "professionals", "children", "adult learners"),
        ("Lessons tailored to your level, with homework that fits a busy week.",
         "Exam-focused practice with past papers and clear feedback.",
         "Conversation-first lessons so you speak from day one."),
        "lesson",
    ),
    Profession(
        "marketing",
        ("seo", "content-strategy", "growth-marketing", "social-media", "copywriting",
         "email-marketing", "paid-ads", "analytics"),
        ("Growth marketer", "SEO consultant", "Content strategist", "Copywriter",
         "Marketing consultant"),
        (("BA", "Marketing"), ("MSc", "Digital Marketing"), ("BA", "Journalism")),
        (50, 220),
        ("startups", "e-commerce brands", "creators", "B2B teams"),
        ("Audits with a prioritised list of fixes you can start on the same day.",
         "Strategy sessions grounded in your data, not in trends."),
        "strategy session",
    ),
    Profession(
        "wellness",
        ("yoga", "meditation", "fitness-training", "breathwork", "pilates", "running-coaching",
         "nutrition-coaching"),
        ("Yoga teacher", "Personal trainer", "Meditation teacher", "Pilates instructor",
         "Running coach"),
        (("RYT-500", "Yoga"), ("BSc", "Sports Science"), ("Certificate", "Personal Training")),
        (30, 120),
        ("beginners", "athletes", "office workers", "seniors"),
        ("Gentle, personalised sessions for every level.",
         "Programmes built around your goals, schedule and injuries."),
        "class",
    ),
)

_by_key = {p.key: p for p in PROFESSIONS}
NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "law": ("tax",),
    "tax": ("law", "engineering"),
    "medicine": ("mental-health", "wellness"),
    "mental-health": ("coaching", "wellness"),
    "design": ("marketing", "engineering"),
    "engineering": ("design", "teaching"),
    "structural": ("design",),
    "coaching": ("mental-health", "marketing"),
    "teaching": ("coaching",),
    "marketing": ("design", "coaching"),
    "wellness": ("medicine", "coaching"),
}

UNIVERSITIES: dict[str, tuple[str, ...]] = {
    "US": ("Columbia University", "University of Michigan", "UC Berkeley", "NYU",
           "University of Texas at Austin"),
    "CA": ("University of Toronto", "McGill University", "University of British Columbia"),
    "GB": ("University of Manchester", "King's College London", "University of Edinburgh"),
    "DE": ("LMU Munich", "Humboldt University of Berlin", "TU Munich", "University of Hamburg"),
    "FR": ("Sciences Po", "Sorbonne University", "Université Lyon 2"),
    "ES": ("Universidad Complutense de Madrid", "Universitat de Barcelona"),
    "IT": ("Bocconi University", "Sapienza University of Rome"),
    "NL": ("University of Amsterdam", "Delft University of Technology"),
    "BR": ("Universidade de São Paulo", "PUC-Rio"),
    "MX": ("UNAM", "Tecnológico de Monterrey"),
    "IN": ("IIT Bombay", "University of Delhi", "IISc Bengaluru"),
    "JP": ("University of Tokyo", "Kyoto University", "Osaka University"),
    "CN": ("Fudan University", "Tsinghua University"),
    "KR": ("Seoul National University", "Yonsei University"),
    "AU": ("University of Sydney", "University of Melbourne"),
    "ZA": ("University of Cape Town", "University of the Witwatersrand"),
    "NG": ("University of Lagos", "University of Ibadan"),
    "KE": ("University of Nairobi", "Strathmore University"),
    "SG": ("National University of Singapore", "Nanyang Technological University"),
}
GLOBAL_UNIVERSITIES = ("University of Oxford", "ETH Zurich", "University of Amsterdam",
                       "London School of Economics", "Stanford University", "INSEAD")

WEEKLY_PATTERNS: tuple[dict[str, list[list[str]]], ...] = (
    {d: [["09:00", "12:00"], ["13:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    {d: [["08:00", "12:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    {d: [["13:00", "18:00"]] for d in ("mon", "tue", "wed", "thu")},
    {d: [["18:00", "21:00"]] for d in ("mon", "tue", "wed", "thu")},
    {d: [["10:00", "16:00"]] for d in ("sat", "sun")},
    {"tue": [["08:00", "18:00"]], "thu": [["08:00", "18:00"]], "sat": [["09:00", "13:00"]]},
    {d: [["07:00", "09:00"], ["17:00", "20:00"]] for d in ("mon", "wed", "fri")},
    {d: [["10:00", "14:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat")},
)
PATTERN_WEIGHTS = (30, 14, 10, 10, 6, 8, 6, 10)
SLOT_MINUTES = (30, 45, 60, 90)
SLOT_WEIGHTS = (25, 15, 45, 15)
NOTICE_MINUTES = (0, 60, 120, 240, 720, 1440)
NOTICE_WEIGHTS = (20, 30, 20, 10, 10, 10)
BUFFER_MINUTES = (0, 5, 10, 15)
BUFFER_WEIGHTS = (50, 15, 20, 15)
# fmt: on


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalnum())


def _skill_label(slug: str) -> str:
    return slug.replace("-", " ")


@dataclass
class _Person:
    specialist: dict[str, Any]
    schedules: list[dict[str, Any]]


class _Generator:
    def __init__(self, rng: random.Random, now: datetime, number_base: int) -> None:
        self.rng = rng
        self.now = now
        self.today = now.date()
        self.number_base = number_base

    def person(self, n: int) -> _Person:
        rng = self.rng
        city = rng.choice(CITIES)
        firsts, lasts = NAMES[city.names]
        first, last = rng.choice(firsts), rng.choice(lasts)
        name = f"{first} {last}"
        field = rng.choice(PROFESSIONS)
        skills = rng.sample(field.skills, rng.randint(2, min(5, len(field.skills))))
        if rng.random() < 0.2:  # a side skill from a neighbouring field
            other = _by_key[rng.choice(NEIGHBOURS[field.key])]
            extra = rng.choice(other.skills)
            if extra not in skills:
                skills.append(extra)
        languages = _languages(rng, city)
        title = rng.choice(field.titles)
        years = rng.randint(2, 30)
        rate_lo, rate_hi = field.rate_usd
        hourly = rng.randint(rate_lo, rate_hi) // 5 * 5
        reviews = 0 if rng.random() < 0.1 else min(900, int(rng.paretovariate(1.3) * 6))
        rating = 0.0 if reviews == 0 else round(rng.triangular(3.4, 5.0, 4.7), 1)
        about = _about(rng, field, title, years, city, skills, languages)
        education = self._education(rng, field, city, years)
        handle = f"{_ascii(first)}.{_ascii(last)}.{self.number_base + n}"
        specialist = {
            "name": name,
            "title": title,
            "about": about,
            "city": city.name,
            "country": city.country,
            "timezone": city.timezone,
            "languages": languages,
            "skills": skills,
            "education": education,
            "hourly_rate": hourly * 1_000_000,
            "rate_currency": "USD",
            "rating": rating,
            "review_count": reviews,
            "email": f"{handle}@example.com",
            "phone": f"+{city.phone} 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
            "search_text": specialist_search_text(name, title, about, skills),
            "created_at": self.now,
            "updated_at": self.now,
        }
        count = 1 if rng.random() < 0.6 else 2
        schedules = [self._schedule(rng, field, city, skills, hourly) for _ in range(count)]
        return _Person(specialist, schedules)

    def _education(
        self, rng: random.Random, field: Profession, city: City, years: int
    ) -> list[dict[str, Any]]:
        out = []
        for i in range(rng.choice((1, 1, 2))):
            degree, subject = rng.choice(field.degrees)
            pool = UNIVERSITIES.get(city.country, GLOBAL_UNIVERSITIES)
            if rng.random() < 0.25:
                pool = GLOBAL_UNIVERSITIES
            out.append(
                {
                    "degree": degree,
                    "field": subject,
                    "institution": rng.choice(pool),
                    "year": self.today.year - years - 1 + i * rng.randint(1, 4),
                }
            )
        return out

    def _schedule(
        self, rng: random.Random, field: Profession, city: City, skills: list[str], hourly: int
    ) -> dict[str, Any]:
        weekly = rng.choices(WEEKLY_PATTERNS, PATTERN_WEIGHTS)[0]
        minutes = rng.choices(SLOT_MINUTES, SLOT_WEIGHTS)[0]
        group = rng.random() < 0.08
        capacity = rng.randint(4, 12) if group else 1
        usd = hourly * minutes / 60 * (0.4 if group else 1.0)
        price_usd = max(5, int(usd) // 5 * 5) * 1_000_000
        currency = "USDC" if rng.random() < 0.15 else "USD"
        own = [s for s in skills if s in field.skills]
        topic_skills = rng.sample(own, min(len(own), rng.randint(1, 2)))
        kind = "group " + field.session if group else field.session
        label = f"{_skill_label(topic_skills[0]).capitalize()} {kind}"
        blackouts = sorted(
            {
                (self.today + timedelta(days=rng.randint(1, 30))).isoformat()
                for _ in range(rng.choice((0, 0, 0, 1, 2, 3)))
            }
        )
        overrides: dict[str, list[list[str]]] = {}
        if rng.random() < 0.1:
            day = (self.today + timedelta(days=rng.randint(1, 20))).isoformat()
            overrides[day] = [] if rng.random() < 0.5 else [["10:00", "12:00"]]
        end_date = None if rng.random() < 0.8 else self.today + timedelta(rng.randint(20, 180))
        return {
            "label": label,
            "description": f"{minutes}-minute {kind} on "
            f"{' and '.join(map(_skill_label, topic_skills))}, online, from {city.name}.",
            "skills": topic_skills,
            "timezone": city.timezone,
            "weekly_hours": weekly,
            "overrides": overrides,
            "blackout_dates": blackouts,
            "slot_minutes": minutes,
            "buffer_minutes": rng.choices(BUFFER_MINUTES, BUFFER_WEIGHTS)[0],
            "min_notice_minutes": rng.choices(NOTICE_MINUTES, NOTICE_WEIGHTS)[0],
            "start_date": self.today - timedelta(days=rng.randint(0, 90)),
            "end_date": end_date,
            "price_amount": price_usd,
            "price_currency": currency,
            "price_usd_micros": usd_value(price_usd, currency),
            "capacity": capacity,
            "private": rng.random() < 0.04,
            "auto_accept": rng.random() < 0.7,
            "created_at": self.now,
            "updated_at": self.now,
            "deleted_at": self.now if rng.random() < 0.02 else None,
        }


def _languages(rng: random.Random, city: City) -> list[str]:
    langs = [city.languages[0]]
    for lang in city.languages[1:]:
        if rng.random() < 0.6:
            langs.append(lang)
    if "en" not in langs and rng.random() < 0.5:
        langs.append("en")
    if rng.random() < 0.1:
        extra = rng.choice(("es", "fr", "de", "pt", "zh", "ar", "ru", "it", "ja"))
        if extra not in langs:
            langs.append(extra)
    return langs


# fmt: off
LANGUAGE_NAMES = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "pt": "Portuguese",
    "it": "Italian", "zh": "Mandarin", "ja": "Japanese", "ar": "Arabic", "hi": "Hindi",
    "ru": "Russian", "nl": "Dutch", "ko": "Korean", "tr": "Turkish", "pl": "Polish",
}
# fmt: on


def _about(
    rng: random.Random,
    field: Profession,
    title: str,
    years: int,
    city: City,
    skills: Sequence[str],
    languages: Sequence[str],
) -> str:
    focus = ", ".join(_skill_label(s) for s in skills[:-1])
    focus = f"{focus} and {_skill_label(skills[-1])}" if focus else _skill_label(skills[-1])
    spoken = [LANGUAGE_NAMES.get(code, code) for code in languages]
    parts = [
        f"I help {rng.choice(field.clients)} with {focus}.",
        rng.choice(field.approach),
        f"{title}, {years} years of experience, based in {city.name}.",
        f"Sessions online in {', '.join(spoken)}.",
    ]
    return " ".join(parts)


async def load_demo_data(db: Database, count: int, *, seed: int = 7, if_empty: bool = False) -> int:
    """Create ``count`` demo specialists with schedules; returns how many were created.

    Deterministic: the same ``seed`` on the same database state gives the same rows. With
    ``if_empty``, does nothing (returns 0) when any specialist exists. Each schedule's
    ``next_free_at`` is computed as it is written, and the tables' planner statistics are
    refreshed once loaded, so search is fast from the first call.
    """
    if count < 0:
        raise ValueError("count must be zero or more")
    async with db.uow() as uow:
        existing = (await uow.session.execute(select(func.count(Specialist.id)))).scalar_one()
        base = (await uow.session.execute(select(func.max(Specialist.id)))).scalar() or 0
    if if_empty and existing:
        return 0
    now = db.clock.now()
    rng = random.Random(seed if base == 0 else f"{seed}:{base}")  # noqa: S311 - demo data
    gen = _Generator(rng, now, base)
    specialists = cast(Table, Specialist.__table__)  # Core inserts: plain executemany batches
    schedules = cast(Table, Schedule.__table__)
    created = 0
    while created < count:
        people = [gen.person(created + i + 1) for i in range(min(CHUNK, count - created))]
        async with db.uow() as uow:
            ids = (
                (
                    await uow.session.execute(
                        insert(specialists).returning(
                            specialists.c.id, sort_by_parameter_order=True
                        ),
                        [p.specialist for p in people],
                    )
                )
                .scalars()
                .all()
            )
            rows = []
            for specialist_id, person in zip(ids, people, strict=True):
                for sched in person.schedules:
                    sched["specialist_id"] = specialist_id
                    sched["next_free_at"] = _next_free(sched, now)
                    rows.append(sched)
            await uow.session.execute(insert(schedules), rows)
            await uow.commit()
        created += len(people)
    if created:
        await analyze(db, CATALOGUE_TABLES)  # or search plans for empty tables until autovacuum
    return created


def _next_free(sched: dict[str, Any], now: datetime) -> datetime:
    spec = ScheduleSpec.build(
        id=0,
        timezone=sched["timezone"],
        weekly_hours=sched["weekly_hours"],
        slot_minutes=sched["slot_minutes"],
        overrides=sched["overrides"],
        blackout_dates=sched["blackout_dates"],
        buffer_minutes=sched["buffer_minutes"],
        min_notice_minutes=sched["min_notice_minutes"],
        start_date=sched["start_date"],
        end_date=sched["end_date"],
        capacity=sched["capacity"],
    )
    return next_free_bound(spec, now, {})
