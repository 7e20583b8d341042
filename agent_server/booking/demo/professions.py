"""Demo professions: skills, titles, degrees, rates and about text per field, the fields
next to each, and the universities of each country."""

from __future__ import annotations

from dataclasses import dataclass


# Data tables, laid out by hand.
# fmt: off
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

PROFESSION_BY_KEY = {p.key: p for p in PROFESSIONS}
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
# fmt: on
