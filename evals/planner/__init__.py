"""The planner evaluation: scenarios.yaml run through tools.plan.make_plan (see __main__)."""
