"""The generated graph's schema: entity types, relations, attributes, vocabulary."""

from __future__ import annotations

from dataclasses import dataclass

COUNTRY, CITY, PERSON = "location.country", "location.citytown", "people.person"


PROFESSION, UNIVERSITY = "people.profession", "education.university"


COMPANY, INDUSTRY = "business.company", "business.industry"


FILM, GENRE, DIRECTOR, ACTOR = "film.film", "film.film_genre", "film.director", "film.actor"


TEAM, SPORT, ATHLETE = "sports.sports_team", "sports.sport", "sports.pro_athlete"


TYPE_NOUNS: dict[str, tuple[str, str]] = {
    COUNTRY: ("country", "countries"),
    CITY: ("city", "cities"),
    PERSON: ("person", "people"),
    PROFESSION: ("profession", "professions"),
    UNIVERSITY: ("university", "universities"),
    COMPANY: ("company", "companies"),
    INDUSTRY: ("industry", "industries"),
    FILM: ("film", "films"),
    GENRE: ("film genre", "film genres"),
    DIRECTOR: ("film director", "film directors"),
    ACTOR: ("actor", "actors"),
    TEAM: ("sports team", "sports teams"),
    SPORT: ("sport", "sports"),
    ATHLETE: ("athlete", "athletes"),
}


@dataclass(frozen=True)
class Rel:
    """A relation and how a question describes what it reaches from a subject ``{}``."""

    name: str
    domain: str
    range: str
    singular: str  # "was born in {}": which person was born in X?
    plural: str  # "were born in {}": how many people were born in X?


def _pair(domain: str, range_: str, *texts: str) -> tuple[Rel, Rel]:
    fwd, fwd_one, fwd_many, rev, rev_one, rev_many = texts
    return Rel(fwd, domain, range_, fwd_one, fwd_many), Rel(rev, range_, domain, rev_one, rev_many)


# Each fact is stored both ways, under Freebase-style names. Per pair: domain, range, then
# the forward relation with its clauses (singular, plural), then the reverse one.
# fmt: off
SCHEMA: tuple[tuple[Rel, Rel], ...] = (
    _pair(PERSON, CITY,
          "people.person.place_of_birth", "is the birthplace of {}", "are the birthplaces of {}",
          "location.location.people_born_here", "was born in {}", "were born in {}"),
    _pair(PERSON, COUNTRY,
          "people.person.nationality", "is the country of nationality of {}", "are the countries of nationality of {}",
          "location.country.people_with_this_nationality", "is a citizen of {}", "are citizens of {}"),
    _pair(CITY, COUNTRY,
          "location.location.containedby", "contains {}", "contain {}",
          "location.location.contains", "is located in {}", "are located in {}"),
    _pair(PERSON, UNIVERSITY,
          "people.person.education", "was attended by {}", "were attended by {}",
          "education.educational_institution.students_graduates", "studied at {}", "studied at {}"),
    _pair(PERSON, PROFESSION,
          "people.person.profession", "is a profession of {}", "are the professions of {}",
          "people.profession.people_with_this_profession", "has the profession {}", "have the profession {}"),
    _pair(PERSON, COMPANY,
          "people.person.employer", "employs {}", "employ {}",
          "business.employer.employees", "works for {}", "work for {}"),
    _pair(COMPANY, PERSON,
          "organization.organization.founders", "founded {}", "founded {}",
          "organization.organization_founder.organizations_founded", "was founded by {}", "were founded by {}"),
    _pair(COMPANY, CITY,
          "organization.organization.headquarters", "is the headquarters city of {}", "are the headquarters cities of {}",
          "location.location.headquartered_organizations", "is headquartered in {}", "are headquartered in {}"),
    _pair(COMPANY, INDUSTRY,
          "business.business_operation.industry", "is the industry of {}", "are the industries of {}",
          "business.industry.companies", "operates in {}", "operate in {}"),
    _pair(UNIVERSITY, CITY,
          "education.university.city", "is home to {}", "are home to {}",
          "location.citytown.universities", "is located in {}", "are located in {}"),
    _pair(FILM, DIRECTOR,
          "film.film.directed_by", "directed {}", "directed {}",
          "film.director.film", "was directed by {}", "were directed by {}"),
    _pair(FILM, ACTOR,
          "film.film.starring", "starred in {}", "starred in {}",
          "film.actor.film", "stars {}", "star {}"),
    _pair(FILM, GENRE,
          "film.film.genre", "is a genre of {}", "are the genres of {}",
          "film.film_genre.films_in_this_genre", "belongs to the genre {}", "belong to the genre {}"),
    _pair(FILM, COUNTRY,
          "film.film.country", "is the country of origin of {}", "are the countries of origin of {}",
          "location.country.films_produced", "was produced in {}", "were produced in {}"),
    _pair(TEAM, CITY,
          "sports.sports_team.location", "is the home city of {}", "are the home cities of {}",
          "sports.sports_team_location.teams", "is based in {}", "are based in {}"),
    _pair(TEAM, SPORT,
          "sports.sports_team.sport", "is the sport played by {}", "are the sports played by {}",
          "sports.sport.teams", "plays {}", "play {}"),
    _pair(TEAM, ATHLETE,
          "sports.sports_team.roster", "plays for {}", "play for {}",
          "sports.pro_athlete.teams", "has {} on its roster", "have {} on their rosters"),
)


# fmt: on
RELATIONS: dict[str, Rel] = {r.name: r for pair in SCHEMA for r in pair}


PAIRS: dict[str, tuple[Rel, Rel]] = {pair[0].name: pair for pair in SCHEMA}


# type -> (attribute, low, high, decimals); a tenth of the entities lack each attribute.
ATTRIBUTES: dict[str, tuple[tuple[str, float, float, int], ...]] = {
    COUNTRY: (
        ("location.statistical_region.population", 500_000, 200_000_000, 0),
        ("location.location.area", 10_000, 2_000_000, 0),
    ),
    CITY: (
        ("location.statistical_region.population", 20_000, 5_000_000, 0),
        ("location.location.area", 20, 2_000, 1),
        ("location.location.elevation", 0, 2_500, 0),
    ),
    PERSON: (
        ("people.person.height_meters", 1.5, 2.05, 2),
        ("people.person.birth_year", 1930, 2002, 0),
    ),
    UNIVERSITY: (
        ("organization.organization.year_founded", 1450, 1990, 0),
        ("education.educational_institution.total_enrollment", 2_000, 60_000, 0),
    ),
    COMPANY: (
        ("organization.organization.year_founded", 1850, 2020, 0),
        ("business.employer.number_of_employees", 10, 300_000, 0),
        ("business.business_operation.revenue", 1, 500_000, 1),
    ),
    FILM: (
        ("film.film.release_year", 1950, 2023, 0),
        ("film.film.runtime", 70, 200, 0),
        ("film.film.estimated_budget", 1, 300, 1),
    ),
    TEAM: (
        ("sports.sports_team.year_founded", 1870, 2015, 0),
        ("sports.sports_team.arena_capacity", 2_000, 100_000, 0),
    ),
}


ATTRIBUTE_NOUNS = {
    "location.statistical_region.population": "population",
    "location.location.area": "area",
    "location.location.elevation": "elevation",
    "people.person.height_meters": "height",
    "people.person.birth_year": "birth year",
    "organization.organization.year_founded": "founding year",
    "education.educational_institution.total_enrollment": "enrollment",
    "business.employer.number_of_employees": "number of employees",
    "business.business_operation.revenue": "revenue",
    "film.film.release_year": "release year",
    "film.film.runtime": "runtime",
    "film.film.estimated_budget": "budget",
    "sports.sports_team.year_founded": "founding year",
    "sports.sports_team.arena_capacity": "arena capacity",
}


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _items(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


FIRST = _words(
    "Alice Bruno Chloe Dmitri Elena Farid Grace Hiro Ines Jonas Keiko Liam Maya Nikolai Olga "
    "Pedro Quinn Rosa Sven Tara Umar Vera Wendell Ximena Yusuf Zoe Amara Bennett Carmen Dario "
    "Esme Felix Greta Hamid Isla Joaquin Kofi Lena Mateo Nadia"
)


LAST = _words(
    "Moreno Schmidt Okafor Tanaka Novak Larsen Patel Rossi Kowalski Dubois Haddad Lindqvist "
    "Fischer Costa Nguyen Brennan Ivanova Sato Mendes Kaur Becker Silva Horvat Jensen Adeyemi "
    "Petrov Walsh Yilmaz Romano Hughes Castillo Eriksen Mbeki Farouk Oliveira Szabo"
)


SYL = _words("bar cel dor fen gal har ist kor lan mir nor ost pra quin ros sal tor ulm ven wes zar")


COUNTRY_ENDS = _words("ia land stan onia ovia ara")


ADJ = _words(
    "Silent Golden Crimson Hidden Northern Broken Distant Electric Iron Silver Wild Quiet "
    "Burning Frozen Velvet Hollow Scarlet Endless Lunar Painted"
)


NOUN = _words(
    "River Harbor Compass Orchard Signal Garden Empire Tide Forest Mirror Lantern Frontier "
    "Summit Canyon Meadow Circuit Voyage Horizon Citadel Ember"
)


COMPANY_ENDS = _words("Labs Group Systems Holdings Works Dynamics Partners Industries")


MASCOTS = _words("Falcons Lions Rovers Comets Wolves Titans Hawks Pilots Bears Mariners")


PROFESSIONS = _items(
    "Actor|Film director|Athlete|Entrepreneur|Engineer|Physician|Lawyer|Writer|Musician|Scientist"
)


INDUSTRIES = _items("Aerospace|Biotechnology|Retail|Software|Banking|Energy|Logistics|Media")


GENRES = _items("Drama|Comedy|Thriller|Documentary|Animation|Science fiction|Horror|Romance")


SPORTS = _items("Football|Basketball|Ice hockey|Baseball|Volleyball")
