"""School years and terms, grades, courses, classes, teachers and class membership over time."""
