"""Makes `import pure_model_codegen` work when pytest runs from a plain checkout."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
