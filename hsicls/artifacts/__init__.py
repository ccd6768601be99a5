"""The files hsicls makes: the prepared file, the model bundle, the output guard, part files of distributed maps."""
