"""Stand-ins for the original service's modules (`app.*`), which its tests
import. The original's app ran in the tests' process; here `app.main.app`
forwards every request to a live `activator serve`, the email service's
`sent_codes` reads the mail sink, and the rate limiter's counters are read
from the server (see live.py). The rest only has to import."""
