# Import the workspace packages first: with --import-mode=importlib, a test under contracts/tests would
# otherwise bind the name `contracts` to the project folder rather than the package.
import contracts  # noqa: F401
import gateway  # noqa: F401

pytest_plugins = ["kit.testing"]
