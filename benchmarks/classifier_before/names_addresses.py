"""Person names and street addresses, without a language model.

Names: a capitalised word pair whose first word is a known given name, or any
capitalised pair after a strong cue (``Mr.``, ``Dear``, ``Name:``, ``patient``).
Addresses: house number + street words + a street-type suffix (US/UK style),
German/Dutch compound street names with a number, French ``rue``/``avenue`` forms.
This is a heuristic layer: recall on names written without a cue and with an
uncommon given name is limited (see docs/router.md).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from classifier_before.findings import Doc, Finding, before_ok, register_cues

GIVEN_NAMES = frozenset(
    """
Aaron Abigail Adam Adrian Ahmed Aisha Alan Albert Alejandro Alex Alexander Alexandra Alexis Alice Alicia
Alison Amanda Amber Amelia Amina Amir Amy Ana Andrea Andreas Andrew Angela Anil Anita Ann Anna Anne Anthony
Antonio Arjun Arthur Ashley Aya Barbara Beatriz Ben Benjamin Bernard Beth Betty Bianca Bill Bob Brandon Brenda
Brian Bruce Bruno Camila Carl Carla Carlos Carmen Carol Caroline Catherine Charles Charlotte Chen Chloe Chris
Christian Christina Christine Christopher Claire Claudia Colin Craig Cynthia Daniel Daniela David Deborah
Debra Dennis Diana Diego Dmitri Dominic Donald Donna Dorothy Douglas Dylan Edward Elena Eleanor Elif Elizabeth
Ella Emily Emma Eric Erik Emilia Ethan Eva Evelyn Fatima Felipe Felix Fernando Fiona Florian Frances Francesca
Francisco Frank Gabriel Gabriela Gary George Gerald Giulia Giuseppe Grace Gregory Hana Hannah Hans Harold
Harry Heather Helen Henry Hiroshi Hugo Ian Ibrahim Igor Ines Irene Isaac Isabel Isabella Ivan Jack Jacob James
Jamie Jan Jane Janet Jason Javier Jean Jeffrey Jennifer Jeremy Jessica Joan Joanna Joe John Jonathan Jordan
Jorge Jose Joseph Joshua Joyce Juan Judith Julia Julian Julie Justin Karen Kate Katherine Kathleen Kayla Keith
Kelly Kenji Kenneth Kevin Kimberly Klaus Kyle Laura Lauren Lawrence Leah Lena Leon Liam Linda Lisa Logan
Lorenzo Louis Lucas Lucia Luis Luisa Luka Madison Magdalena Maria Marie Mario Mark Marco Margaret Marta Martin
Mary Mateo Matthew Maya Megan Mehmet Melissa Michael Michelle Miguel Mohammed Muhammad Nancy Natalie Nathan
Nicholas Nicole Nikolai Noah Nora Oliver Olivia Omar Oscar Pablo Pamela Patricia Patrick Paul Paula Pedro
Peter Philip Pierre Priya Rachel Rahul Rajesh Ralph Raymond Rebecca Richard Robert Roberto Roger Ronald Rosa
Ruth Ryan Samantha Samuel Sandra Sara Sarah Scott Sean Sebastian Sergei Sharon Shirley Simon Sofia Sophia
Sophie Stefan Stephanie Stephen Steven Susan Svetlana Takeshi Teresa Terry Thomas Tiffany Tim Timothy Tom
Tyler Valentina Vanessa Victor Victoria Vikram Vincent Virginia Walter Wei Wendy William Xavier Yara Yuki
Yusuf Zachary Zoe Lars Ingrid Astrid Sven Bjorn Hiro Mei Ling Yan Li Ananya Deepak Sanjay Sunita Kwame Chidi
Ngozi Oluwaseun Tariq Leila Hassan Yasmin Mustafa Elias Noor Kofi Amara Camille Manon Chiara Matteo Alessandro
Francesco Jakub Piotr Katarzyna Agnieszka Tomasz Marek Oksana Olga Irina Natasha Anastasia Pavel Andrei
Mikhail Jose Luz Guadalupe Alejandra Valeria Ximena Santiago Rafael Ricardo Eduardo Gustavo Renata Leonardo
Thiago Gabriele Jonas Lukas Niklas Finn Mia Lea Emil Anton Ida Freya Ola Nils Rohan Aditya Kavya Neha Pooja
Ravi Suresh Ramesh Lakshmi Meera Haruto Sakura Ren Minh Thanh Linh Jin Hyun Seo Grant Dale Glenn Wayne Russell
Bradley Derek Marcus Travis Troy Shane Sheila Gloria Judy Janice Beverly Denise Marilyn Theresa Kathryn Heidi
Martha Gail Rita Vera Joy Holly Kristen Brittany Danielle Courtney Erin Molly
    """.split()  # noqa: SIM905
)

SURNAMES = frozenset(
    """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson
Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis Robinson
Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell
Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales
Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson
Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long
Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Fisher Vasquez
Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant
Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez Mcdonald
Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter
Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose
Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner
Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce Vazquez Hansen Peters Santos Hart Bradley Knight Elliott
Cunningham Duncan Armstrong Hudson Carroll Lane Riley Andrews Alvarado Ray Delgado Berry Perkins Hoffman Johnston
Matthews Pena Richards Contreras Willis Carpenter Lawrence Sandoval Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou
Xu Sun Ma Zhu Hu Guo Lin Singh Kumar Sharma Gupta Khan Ali Ahmed Hussain Shah Mehta Reddy Rao Iyer Nair Das Bose
Mukherjee Banerjee Chatterjee Tanaka Suzuki Takahashi Watanabe Ito Yamamoto Nakamura Kobayashi Sato Kato Yoshida
Yamada Sasaki Park Choi Jung Kang Cho Yoon Jang Lim Müller Mueller Schneider Fischer Weber Becker Schulz Koch
Bauer Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange Werner Krause
Lehmann Köhler Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti Costa
Giordano Mancini Rizzo Lombardi Moretti Dubois Durand Leroy Moreau Simon Laurent Lefebvre Michel Bernard Petit
Roux Fournier Girard Bonnet Dupont Lambert Fontaine Rousseau Vincent Muller Lefevre Faure Andre Mercier Blanc
Guerin Boyer Garnier Chevalier Francois Legrand Gauthier Perrin Robin Clement Morin Nicolas Henry Roussel Mathieu
Gautier Masson Marchand Duval Denis Dumont Marie Lemaire Noel Meyer Dufour Meunier Brun Blanchard Giraud Joly
Riviere Lucas Brunet Gaillard Barbier Arnaud Martinez Gerard Roche Renard Schmitt Roy Leroux Colin Vidal Caron
Picard Roger Fabre Aubert Lemoine Renaud Dumas Lacroix Olivier Philippe Bourgeois Pierre Benoit Rey Leclerc
Payet Rolland Leclercq Guillaume Lecomte Lopez Jean Dupuy Guillot Hubert Berger Carpentier Sanchez Dupuis
Moulin Louis Deschamps Huet Vasseur Perez Boucher Fleury Royer Klein Jacquet Adam Paris Poirier Marty Aubry
Guyot Carre Charles Renault Charpentier Menard Maillard Baron Bertin Bailly Herve Schneider Fernandez Le Collet
Leger Bouvier Julien Prevost Millet Perrot Daniel Le Roux Cousin Germain Breton Besson Langlois Remy Le Pelletier
Leveque Perrier Leblanc Barre Lebrun Marchal Weber Mallet Hamon Boulanger Jacob Monnier Michaud Rodriguez Guichard
Gillet Etienne Grondin Poulain Tessier Chevallier Collin Chauvin Da Silva Bouchet Gay Lemaitre Benard Marechal
Humbert Reynaud Antoine Hoarau Perret Barthelemy Cordier Pichon Lejeune Gilbert Lamy Delaunay Pasquier Carlier
Laporte Kowalski Nowak Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański Woźniak Dąbrowski
Novak Novák Horvat Kovačević Petrović Ivanov Smirnov Kuznetsov Popov Petrov Sokolov Volkov Petrova Ivanova
Larsen Hansen Nielsen Jensen Pedersen Andersen Johansson Andersson Karlsson Nilsson Eriksson Olsen Berg Haugen
Okafor Okonkwo Mensah Owusu Boateng Adeyemi Oyelaran Mokoena Dlamini Nkosi Ndlovu Kamau Otieno Mwangi Haddad
Khoury Nasser Aziz Hassan Ibrahim Mahmoud Yilmaz Kaya Demir Şahin Çelik Öztürk Cohen Levi Mizrahi Friedman
Walsh Murphy Kelly Byrne Ryan O'Brien O'Connor O'Sullivan Doyle McCarthy Gallagher Doherty Kennedy Lynch Quinn
Mendes Pereira Oliveira Souza Rodrigues Almeida Nascimento Lima Araujo Carvalho Gomes Ribeiro Martins Rocha Dias
Raman Iyer Pillai Menon Krishnan Subramanian Venkatesh
""".split()  # noqa: SIM905
)

# Capitalised words that follow a given name but are not surnames ("Grace Period", "Jordan River").
_NOT_SURNAME = frozenset(
    """
Street St Avenue Ave Road Rd Lane Drive Boulevard Court Way Place Park River Lake Mountain Valley Hill City
County State University College School Hospital Clinic Bank Inc Ltd LLC Corp Corporation Company Group
Foundation Institute Center Centre Museum Library Airport Station Hotel Church Cathedral Square Bridge Tower
Building Hall Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June
July August September October November December Period Notes Release Version Update Team Project Service
Server Cluster Code Studio Cloud API SDK The And Or Of For In On At To With From By Is Was Are Be Has Have Had
Will Can
    """.split()  # noqa: SIM905
)
# capitalised words that start sentences or titles and are never given names
_NOT_FIRST = frozenset(
    """
The This That These Those Our Your Their His Her My Its Dear Hello Thanks Thank Best Kind Regards Please Meeting
Project Team Department Office North South East West New Old Saint St San Santa Los Las Fort Mount Lake Port Dr
Mr Mrs Ms Professor General Captain President Minister Senator Judge Doctor Nurse Sales Support Customer Client
Ask Tell Call Email Ping Send Contact Invite Meet Help Let See Check Message Notify Remind Add Remove Assign Cc
Via With From For And But When If After Before Since Until During Per
""".split()  # noqa: SIM905
)
_TITLE = r"(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Dame|Herr|Frau|Sr|Sra|Mme|Mlle|M)\.?"
_UP = "A-ZÀ-ÖØ-ÞŁŠŽČŘ"
_LO = "a-zß-öø-ÿłšžčřćńśźż"
# a capitalised word: Ana, O'Brien, McDonald, Jean-Luc (starts with the capital, so re can skip ahead fast)
_CAP = rf"[{_UP}](?:'[{_UP}])?[{_LO}]+(?:[{_UP}][{_LO}]+)?(?:-[{_UP}][{_LO}]+)?"
_PARTICLE = r"(?:van der|van den|van|von|de la|de|da|del|der|di|du|la|le|bin|al|ten)"
_FULL = rf"{_CAP}(?: [A-Z]\.)?(?: {_PARTICLE})? {_CAP}"
# a run of capitalised words (with initials and particles); names are looked for inside it
_CAP_RUN = re.compile(rf"{_CAP}(?: (?:[A-Z]\.|{_PARTICLE}(?= [A-Z])|{_CAP}))+(?![\w\-])")
_PARTICLES = frozenset(["van", "der", "den", "von", "de", "la", "da", "del", "di", "du", "le", "bin", "al", "ten"])
_TITLED = re.compile(rf"{_TITLE} ({_CAP}(?: {_CAP})?)(?![\w\-])")
_CUE_WORDS = [
    "name",
    "full name",
    "patient",
    "customer",
    "client",
    "employee",
    "applicant",
    "tenant",
    "signed",
    "contact person",
    "account holder",
    "cardholder",
    "insured",
    "beneficiary",
    "passenger",
    "guest",
    "kunde",
    "kundin",
    "nombre",
    "nom",
    "cliente",
    "paziente",
]
register_cues("name_cue", _CUE_WORDS)
# phrases that introduce one's own name: strong enough for a lowercase name; weaker cues ("name:", "patient:")
# need a colon and, for lowercase or ALL CAPS words, a listed given name or surname
_STRONG_CUES = frozenset(
    [
        "my name is",
        "my full name is",
        "me llamo",
        "mi nombre es",
        "je m'appelle",
        "mon nom est",
        "ich heiße",
        "ich heisse",
        "mein name ist",
        "mi chiamo",
        "il mio nome è",
        "meu nome é",
        "o meu nome é",
        "chamo-me",
        "nazywam się",
        "mam na imię",
        "mijn naam is",
        "ik heet",
    ]
)
register_cues("name_cue", _STRONG_CUES)
register_cues(
    "name_cue",
    [
        "patient name",
        "nombre completo",
        "apellidos",
        "apellido",
        "nom complet",
        "prénom",
        "vorname",
        "nachname",
        "nome",
        "cognome",
        "nome completo",
        "imię",
        "nazwisko",
        "naam",
        "名前",
        "氏名",
        "姓名",
        "이름",
        "имя",
        "фио",
        "الاسم",
    ],
)
_CUE_SEP = re.compile(r"[\"']?[ \t]{0,4}[:=：][ \t]{0,4}[\"']?|[ \t]{1,4}")
# letters of any script, as words; a name ends where a word ends (not inside an identifier like search_files)
_ANY_NAME = re.compile(r"[^\W\d_][^\W\d_'’\-]{0,30}(?:[ ,]{1,2}[^\W\d_][^\W\d_'’\-]{0,30}){0,3}(?![\w\-])")
_NOT_NAME_WORDS = frozenset(
    """
not none null nil unknown provided required optional string field value text type here there this that and but or
the a an of to in on for with at is was are my your his her their our me i need help stable normal vitals
irrelevant important hidden private redacted anonymous test example sample user admin customer patient name
names nombre nom name is y e et und de del la le el los las les der die das il lo gli da do dos em en es est ist
è é sono soy je ich io eu yo was what who why how please thanks thank hello hi dear sir madam n a na tbd tba
""".split()  # noqa: SIM905
)
# bounded whitespace, the separator owning the run after it: linear time on a long run of spaces (issue 19)
_CUED_TAIL = re.compile(rf"\s{{0,8}}(?:[:=]\s{{0,8}})?({_FULL})(?![\w\-])")
_BEFORE_EMAIL = re.compile(rf"({_FULL}) ?[(<]")
_SIGNOFF_WORDS = [
    "regards",
    "best",
    "thanks",
    "thank you",
    "cheers",
    "sincerely",
    "yours",
    "br",
    "ciao",
    "saludos",
    "grüße",
    "cordialement",
]
register_cues("signoff", _SIGNOFF_WORDS)
_SIGNOFF_TAIL = re.compile(rf",?[ \t]*\r?\n[ \t]*({_FULL})[ \t]*(?:\r?\n|$)")
_GREETING = re.compile(rf"(?:Dear|Hi|Hello|Hey|Thanks|Thank you|Regards|Cheers|Best|Sincerely),?\s+({_CAP})\b")


def _fold(word: str) -> str:
    """Lucía -> Lucia, for the name lists."""
    if word.isascii():
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def _names_in_run(run: str, offset: int) -> Iterator[Finding]:
    tokens: list[tuple[str, int]] = []
    pos = 0
    for tok in run.split(" "):
        tokens.append((tok, pos))
        pos += len(tok) + 1
    i = 0
    while i < len(tokens) - 1:
        first = tokens[i][0]
        if _fold(first) not in GIVEN_NAMES:
            nxt = tokens[i + 1][0]
            # an unknown given name followed by a known surname
            if _fold(nxt) in SURNAMES and first not in _NOT_SURNAME and first not in _NOT_FIRST and len(first) > 2:
                start = offset + tokens[i][1]
                end = offset + tokens[i + 1][1] + len(nxt)
                yield Finding("person_name", start, end, 0.7, run[start - offset : end - offset], 1)
                i += 2
                continue
            i += 1
            continue
        j = i + 1
        while j < len(tokens) - 1 and (
            (tokens[j][0].endswith(".") and len(tokens[j][0]) == 2) or tokens[j][0] in _PARTICLES
        ):
            j += 1
        last = tokens[j][0]
        if last in _NOT_SURNAME or last in _PARTICLES or last.endswith("."):
            i = j
            continue
        score = 0.65 if _fold(last) in GIVEN_NAMES and _fold(last) not in SURNAMES else 0.8
        start = offset + tokens[i][1]
        end = offset + tokens[j][1] + len(last)
        yield Finding("person_name", start, end, score, run[start - offset : end - offset], 1)
        i = j + 1


def detect_names(doc: Doc) -> Iterator[Finding]:
    text, lower = doc.text, doc.lower
    for m in _CAP_RUN.finditer(text):
        if before_ok(text, m.start(), "-'"):
            yield from _names_in_run(m.group(), m.start())
    for m in _TITLED.finditer(text):
        if before_ok(text, m.start(), "-"):
            yield Finding("person_name", m.start(), m.end(), 0.85, m.group(), 1)
    for c_start, c_end in doc.cues("name_cue"):
        if c_start > 0 and lower[c_start - 1].isalnum():
            continue
        m = _CUED_TAIL.match(text, c_end)
        if m is not None and m.group(1).rsplit(" ", 1)[-1] not in _NOT_SURNAME:
            yield Finding("person_name", m.start(1), m.end(1), 0.8, m.group(1), 1)
            continue
        found = _cued_any_case(text, c_end, lower[c_start:c_end] in _STRONG_CUES)
        if found is not None:
            yield found
    for c_start, c_end in doc.cues("signoff"):
        if c_start > 0 and lower[c_start - 1].isalnum():
            continue
        m = _SIGNOFF_TAIL.match(text, c_end)
        if m is not None:
            yield from _cued(m)
    pos = text.find("@")
    while pos != -1:
        # "Ana Lima <ana@x.org>" / "Ana Lima (ana@x.org)"
        open_at = max(text.rfind("(", max(0, pos - 65), pos), text.rfind("<", max(0, pos - 65), pos))
        if open_at > 0:
            m = _BEFORE_EMAIL.search(text, max(0, open_at - 60), open_at + 1)
            if m is not None and m.end() == open_at + 1:
                yield from _cued(m)
        pos = text.find("@", pos + 1)
    for m in _GREETING.finditer(text):
        if before_ok(text, m.start(), "") and _fold(m.group(1)) in GIVEN_NAMES:
            yield Finding("person_name", m.start(1), m.end(1), 0.7, m.group(1), 0)


def _is_listed(word: str) -> bool:
    w = _fold(word.title())
    return w in GIVEN_NAMES or w in SURNAMES


def _cued_any_case(text: str, pos: int, strong: bool) -> Finding | None:
    """A name right after a cue in lowercase, ALL CAPS, "Surname, Given" or a non-Latin script."""
    sep = _CUE_SEP.match(text, pos)
    if sep is None or (not strong and not any(c in sep.group() for c in ":=：")):
        return None
    m = _ANY_NAME.match(text, sep.end())
    if m is None:
        return None
    # keep the words up to the first one that is not part of a name ("john smith and I ...")
    words: list[tuple[int, int]] = []
    for w in re.finditer(r"[^ ,]+", m.group()):
        if w.group().casefold() in _NOT_NAME_WORDS:
            break
        words.append((m.start() + w.start(), m.start() + w.end()))
    if not words:
        return None
    start, end = words[0][0], words[-1][1]
    value = text[start:end]
    tokens = [text[a:b] for a, b in words]
    if not all(t.isascii() or ord(max(t)) < 0x250 for t in tokens):  # Cyrillic, Greek, Arabic, CJK, Hangul, ...
        ok = True
    elif "," in value:
        ok = len(tokens) >= 2 and not value.islower() and any(_is_listed(t) for t in tokens)
    elif strong:
        ok = len(tokens) >= 2 or _is_listed(tokens[0])
    else:
        ok = len(tokens) >= 2 and any(_is_listed(t) for t in tokens)
    return Finding("person_name", start, end, 0.8, value, 1) if ok else None


def _cued(m: re.Match[str]) -> Iterator[Finding]:
    last = m.group(1).rsplit(" ", 1)[-1]
    first = m.group(1).split(" ", 1)[0]
    if last not in _NOT_SURNAME and first not in _NOT_FIRST:
        yield Finding("person_name", m.start(1), m.end(1), 0.75, m.group(1), 1)


_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Parkway|"
    r"Pkwy|Highway|Hwy|Circle|Cir|Square|Sq|Trail|Close|Crescent|Gardens|Mews|Row|Walk)"
)
_US_ADDR = re.compile(
    rf"\d{{1,6}}[A-Za-z]?(?: (?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?)?"
    rf"(?: [A-Z][a-z]+\.?| \d+(?:st|nd|rd|th)){{1,4}} "
    rf"{_SUFFIX}\b\.?(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|#)\.? ?[\w\-]+)?"
    rf"(?:,? [A-Z][a-z]+(?: [A-Z][a-z]+){{0,2}}(?:,? (?:[A-Z]{{2}}|[A-Z][a-z]+))?,? (?:\d{{5}}(?:-\d{{4}})?|"
    rf"[A-Z]{{1,2}}\d[A-Z\d]? \d[A-Z]{{2}}))?"
)
_EU_WORDS = [
    "straße",
    "strasse",
    "str.",
    "weg",
    "gasse",
    "platz",
    "allee",
    "ring",
    "damm",
    "ufer",
    "laan",
    "straat",
    "gracht",
    "plein",
    "kade",
    "dijk",
    "gatan",
    "vägen",
    "veien",
]
register_cues("eu_suffix", _EU_WORDS)
_EU_TAIL = re.compile(r"\s\d{1,4}[a-z]?(?:,\s?\d{4,5}(?:\s?[A-Z]{2})?\s[A-ZÄÖÜ][a-zäöüß]+)?(?![\w])")
_EU_HEAD = re.compile(r"[A-ZÄÖÜ][a-zäöüß]*\Z")
_FR_ADDR = re.compile(
    r"\d{1,4}(?: ?bis| ?ter)?,? (?:rue|avenue|boulevard|bd|place|chemin|allée|impasse|quai|via|viale|"
    r"piazza|calle|avenida|plaza|paseo|rua) (?:(?:de la|de l'|des|du|de|del|della|di|da|d')\s?)?[A-ZÉ][\w'\-]+"
    r"(?: [A-ZÉ][\w'\-]+){0,3}(?:,? \d{5} [A-ZÉ][\w\-]+)?"
)


# Spanish, Italian, Portuguese, Polish: the street word, its name, then the number ("Calle Mayor 12, 28013 Madrid",
# "ul. Marszałkowska 12/4, 00-590 Warszawa"); bounded repeats over disjoint classes keep it linear
_UP_X = "A-ZÀ-ÖØ-ÞĄĆĘŁŃŚŹŻŠŽČŘ"
_LO_X = "a-zß-öø-ÿąćęłńśźżšžčř"
_STREET_WORD = (
    r"(?:Calle|C/|Avda\.|Avenida|Av\.|Paseo|Pº|Plaza|Pza\.|Carrer|Camino|Ronda|Travesía|Via|Viale|Corso|Piazza|"
    r"Piazzale|Largo|Vicolo|Rua|Travessa|Praça|Alameda|Estrada|ul\.|al\.|ulica|aleja|os\.|Rynek|plac|pl\.)"
)
_NAME_WORD = rf"(?:[{_UP_X}][{_LO_X}'’\-]{{1,24}}|[IVX]{{1,4}}|\d{{1,2}} de [{_UP_X}][{_LO_X}]{{2,12}})"
_LINK = r"(?:de la|de las|de los|del|de|da|das|do|dos|della|delle|dei|degli|di|d'|y|e)"
_STREET_FIRST = re.compile(
    rf"{_STREET_WORD} ?(?:{_LINK} ?)?{_NAME_WORD}(?: (?:{_LINK} )?{_NAME_WORD}){{0,4}},? (?:n[º°o]\.? ?)?"
    rf"\d{{1,4}}[A-Za-z]?(?:/\d{{1,4}}[A-Za-z]?)?(?![\w\-/])"
    rf"(?:,? (?:\d{{1,2}}[º°ª] ?[A-Za-z]?,? )?(?:\d{{5}}|\d{{2}}-\d{{3}}|\d{{4}}-\d{{3}}) [{_UP_X}][{_LO_X}]+"
    rf"(?: [{_UP_X}][{_LO_X}]+)?)?"
)
_POSTCODE_IN = re.compile(r"\d{5} |\d{2}-\d{3} |\d{4}-\d{3} ")
# words that are also ordinary English/Italian words: those need a postcode after the number
_AMBIGUOUS_STREET = ("Via ", "Largo ", "Corso ", "Plaza ", "Alameda ", "Ronda ", "Camino ", "Av. ", "pl. ")
_STREET_FIRST_WORDS = [
    "calle",
    "c/",
    "avda.",
    "avenida",
    "av.",
    "paseo",
    "pº",
    "plaza",
    "pza.",
    "carrer",
    "camino",
    "ronda",
    "travesía",
    "via",
    "viale",
    "corso",
    "piazza",
    "piazzale",
    "largo",
    "vicolo",
    "rua",
    "travessa",
    "praça",
    "alameda",
    "estrada",
    "ul.",
    "al.",
    "ulica",
    "aleja",
    "os.",
    "rynek",
    "plac",
    "pl.",
]
# also with the space before: the shared scan would otherwise take " ave" (US suffix) at "… Avenida"
register_cues("street_first", _STREET_FIRST_WORDS + [" " + w for w in _STREET_FIRST_WORDS])
# Japan: prefecture, city/ward and block numbers in kanji ("東京都千代田区丸の内1-9-1"), with an optional 〒 postcode;
# romanised: "1-9-1 Marunouchi, Chiyoda-ku, Tokyo 100-0005"
_JP_ADDR = re.compile(
    r"(?:〒 ?\d{3}-\d{4} ?)?(?:東京都|北海道|京都府|大阪府|[\u4e00-\u9fff]{2,3}県)"
    r"[\u3005\u3040-\u30ff\u4e00-\u9fff]{1,30}"
    r"\d{1,4}(?:丁目|[-－‐ー])\d{1,4}(?:(?:番地?|[-－‐ー])\d{1,4}号?)?"
    r"|〒 ?\d{3}-\d{4}"
)
_JP_ROMAN = re.compile(
    r"\d{1,4}(?:-\d{1,4}){1,2},? [A-Z][a-z]{1,20}(?:-[a-z]{1,10})?,? [A-Z][a-z]{1,20}-(?:ku|shi|cho|machi|gun)"
    r"(?:,? [A-Z][a-z]{1,20}(?:-(?:to|fu|ken))?)?(?:,? \d{3}-\d{4})?"
)
register_cues("jp_roman", ["-ku", "-shi", "-cho", "-machi", "-gun"], right_boundary=True)


_SUFFIX_WORDS = _SUFFIX[3:-1].split("|")
# found by the shared scan as " street", " st", ...; the capital is checked in the original text
register_cues("us_suffix", [" " + w.lower() for w in _SUFFIX_WORDS], right_boundary=True)
_FR_WORDS = [
    "rue",
    "avenue",
    "boulevard",
    "bd",
    "place",
    "chemin",
    "allée",
    "impasse",
    "quai",
    "via",
    "viale",
    "piazza",
    "calle",
    "avenida",
    "plaza",
    "paseo",
    "rua",
]
# also with the space before: the shared scan would otherwise take " avenue" (US suffix) and never report
# "avenue" here, so "27 avenue Victor Hugo" was missed
register_cues("fr_street", _FR_WORDS + [" " + w for w in _FR_WORDS], right_boundary=True)


def _around(
    text: str, rx: re.Pattern[str], hit_start: int, hit_end: int, back: int, floor: int = 0
) -> re.Match[str] | None:
    """The match of ``rx`` that starts at most ``back`` characters before the hit (and not before ``floor``, the
    end of the address found before: a dense list of addresses is then searched once, not once per suffix word)
    and covers it."""
    pos = max(0, floor, hit_start - back)
    while True:
        m = rx.search(text, pos, min(len(text), hit_end + 120))
        if m is None or m.start() > hit_start:
            return None
        if m.end() >= hit_end:
            return m
        pos = m.start() + 1


def detect_addresses(doc: Doc) -> Iterator[Finding]:
    text, lower = doc.text, doc.lower
    # anchored on the street word ("Street", "rue", "...straße"), then the whole address around it
    last_end = -1
    for h_start, h_end in doc.cues("us_suffix"):
        if h_start < last_end or not text[h_start + 1].isupper():
            continue
        m = _around(text, _US_ADDR, h_start, h_end, 72, last_end)
        if m is not None and before_ok(text, m.start(), "-."):
            last_end = m.end()
            yield Finding("street_address", m.start(), m.end(), 0.85, m.group(), 2)
    for h_start, h_end in doc.cues("fr_street"):
        if lower[h_start] == " ":
            h_start += 1
        if h_start == 0 or lower[h_start - 1] != " " or lower[h_end : h_end + 1] != " ":
            continue
        m = _around(text, _FR_ADDR, h_start - 1, h_end + 1, 12)
        if m is not None and before_ok(text, m.start(), "-."):
            yield Finding("street_address", m.start(), m.end(), 0.85, m.group(), 2)
    for c_start, _ in doc.cues("street_first"):
        if lower[c_start] == " ":
            c_start += 1
        if c_start > 0 and (lower[c_start - 1].isalnum() or lower[c_start - 1] in "-./"):
            continue
        if lower.endswith("et ", 0, c_start):
            continue  # "Jones et al. Nature 12" cites a paper
        m = _STREET_FIRST.match(text, c_start)
        if m is None:
            continue
        has_postcode = _POSTCODE_IN.search(m.group()) is not None
        score = 0.6 if m.group().startswith(_AMBIGUOUS_STREET) and not has_postcode else 0.85
        yield Finding("street_address", m.start(), m.end(), score, m.group(), 2)
    if any(ch in text for ch in "都道府県〒"):
        for m in _JP_ADDR.finditer(text):
            yield Finding("street_address", m.start(), m.end(), 0.85, m.group(), 2)
    for h_start, h_end in doc.cues("jp_roman"):
        m = _around(text, _JP_ROMAN, h_start, h_end, 48)
        if m is not None and before_ok(text, m.start(), "-"):
            yield Finding("street_address", m.start(), m.end(), 0.85, m.group(), 2)
    for s_start, s_end in doc.cues("eu_suffix"):
        m = _EU_TAIL.match(text, s_end)
        if m is None:
            continue
        # the street name runs into the suffix: "Lindenstraße 17"
        head = _EU_HEAD.search(text, max(0, s_start - 30), s_start)
        if head is None or not before_ok(text, head.start(), "-"):
            continue
        yield Finding("street_address", head.start(), m.end(), 0.85, text[head.start() : m.end()], 2)
