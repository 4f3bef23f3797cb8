"""Article pages written for these tests, in the layouts news sites use, and the oddities they serve."""

from __future__ import annotations

COUNCIL_TEXT = (
    "The city council voted on Tuesday to rebuild the old tram line along the river, ending a debate "
    "that has divided the district for a decade. Supporters said the line would take thousands of cars "
    "off the embankment every morning. Opponents warned that the budget had already doubled since the "
    "first plans were drawn up, and that the works would close the riverside market for two summers. "
    "The mayor promised that the market would reopen on a new square before the first trams run."
)

# A newspaper layout: <article> with a byline, Open Graph metadata, navigation and a footer to ignore.
NEWSPAPER = f"""<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8"><title>Council backs tram line | The Riverside Post</title>
<meta name="author" content="Ada Fenwick">
<meta property="og:image" content="https://images.example.org/tram.jpg">
<meta property="article:published_time" content="2026-11-03T08:15:00Z">
</head><body>
<nav><a href="/">Home</a> <a href="/politics">Politics</a> <a href="/sport">Sport</a></nav>
<main><article><h1>Council backs tram line</h1><p class="byline">By Ada Fenwick</p>
<p>{COUNCIL_TEXT}</p>
<p>Work is due to start next spring, and the council expects the first passengers within three years.</p>
</article></main>
<footer>Copyright The Riverside Post. Subscribe to our newsletter.</footer></body></html>""".encode()

MATCH_TEXT = (
    "United came from two goals down to beat the league leaders in a match that will be remembered for "
    "years. The winning goal came deep into stoppage time, when the young striker curled a free kick into "
    "the top corner. The manager called it the best performance of his time at the club and said the "
    "squad had finally shown the spirit he had asked for since the summer."
)

# A blog layout: no <article>, the text in nested divs with a sidebar of links.
BLOG = f"""<html><head><title>Late winner stuns leaders</title></head><body>
<div id="header"><h2>Terrace Talk</h2></div>
<div id="wrap"><div class="post"><h1 class="title">Late winner stuns leaders</h1>
<div class="entry"><p>{MATCH_TEXT}</p><p>Next week the team travels north for the cup tie.</p></div></div>
<div class="sidebar"><ul><li><a href="/a">Archive</a></li><li><a href="/b">About</a></li></ul></div></div>
</body></html>""".encode()

# A page in Windows-1252 that declares it in its <meta>, served without a charset in Content-Type.
CAFE_TEXT = (
    "Le café de la gare a rouvert ses portes après deux années de travaux. Les habitués ont retrouvé "
    "le comptoir en zinc, les banquettes rouges et la carte où figure toujours le croque-monsieur « à "
    "l'ancienne ». Le propriétaire espère attirer à nouveau les voyageurs pressés et les étudiants qui "
    "révisaient ici leurs examens, un café crème à la main, jusqu'à la fermeture."
)
LATIN = f"""<html lang="fr"><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252">
<title>Le café de la gare rouvre</title></head><body><article><h1>Le café de la gare rouvre</h1>
<p>{CAFE_TEXT}</p></article></body></html>""".encode("cp1252")

# A paywall: the page says less than the feed did.
PAYWALL = b"""<html><head><title>Subscribe</title></head><body><article><h1>Exclusive</h1>
<p>Subscribe to read the full story.</p></article></body></html>"""

# Markup with no text at all.
NO_TEXT = b"<html><head><title>x</title></head><body><div><img src='a.png'></div></body></html>"

ROBOTS_DISALLOW_PRIVATE = b"User-agent: *\nDisallow: /private/\n"
