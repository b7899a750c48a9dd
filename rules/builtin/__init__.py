"""The rules, one module each (SageMaker's built-ins keep their names); ``rules.registry``
lists them."""
