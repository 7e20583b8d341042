"""Demo places: cities on every continent with their real time zones, languages and
calling codes, the given and family names common there, and the names of languages."""

from __future__ import annotations

from dataclasses import dataclass


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

LANGUAGE_NAMES = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "pt": "Portuguese",
    "it": "Italian", "zh": "Mandarin", "ja": "Japanese", "ar": "Arabic", "hi": "Hindi",
    "ru": "Russian", "nl": "Dutch", "ko": "Korean", "tr": "Turkish", "pl": "Polish",
}
# fmt: on
